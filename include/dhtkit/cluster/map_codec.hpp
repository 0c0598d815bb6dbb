#pragma once
// The cluster map on the wire: the `map` reply (docs/protocol.md). Here rather than in protocol/,
// which knows no cluster types; the byte helpers are protocol/messages.hpp's.

#include <algorithm>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "dhtkit/cluster/cluster_map.hpp"
#include "dhtkit/protocol/messages.hpp"

namespace dhtkit::protocol {

// A `map` reply: the map's epoch, its nodes (id, port, resp_port, state, host), then its slot
// table: the distinct replica sets after the empty one (a holder count, then the ids), and each
// slot's set as an index into them (0: unassigned). Clients follow the map as it is sent,
// whatever placed it. About 33 KB for a few nodes; with many nodes and backups, up to 16384
// sets (a node's [limits] max_value_bytes plus 64 KiB bounds what a client reads).
inline std::string encode_map(std::uint64_t epoch, const std::vector<node>& nodes, const slot_table& slots) {
    std::string out;
    detail::writer w(out);
    w.integer(epoch);
    w.integer(static_cast<std::uint32_t>(nodes.size()));
    for (const auto& n : nodes) {
        w.integer(n.id);
        w.integer(n.port);
        w.integer(n.resp_port);
        w.integer(static_cast<std::uint8_t>(n.state));
        w.integer(static_cast<std::uint16_t>(std::min<std::size_t>(n.host.size(), 0xffff)));
        w.bytes(std::string_view(n.host).substr(0, 0xffff));
    }
    const auto& sets = slots.sets();
    w.integer(static_cast<std::uint32_t>(sets.size() - 1));
    for (std::size_t i = 1; i < sets.size(); ++i) {
        w.integer(static_cast<std::uint8_t>(sets[i].size()));
        for (auto id : sets[i]) w.integer(id);
    }
    for (std::size_t s = 0; s < slot_count; ++s) w.integer(static_cast<std::uint16_t>(slots.set_index(static_cast<slot_t>(s))));
    return out;
}
inline std::string encode_map(const cluster_map& m) { return encode_map(m.epoch(), m.nodes(), m.slots()); }

struct map_reply {
    std::uint64_t epoch = 0;
    std::vector<node> nodes;
    slot_table slots;
};

// Refuses anything malformed: a holder that is not one of the nodes, a set named by no index, an
// empty or repeated set, bytes left over.
inline std::optional<map_reply> decode_map(std::string_view in) {
    detail::reader r(in);
    map_reply out;
    std::uint32_t count = 0;
    if (!r.integer(out.epoch) || !r.integer(count) || count > in.size() / 15) return std::nullopt;
    for (std::uint32_t i = 0; i < count; ++i) {
        node n;
        std::uint8_t state = 0;
        std::uint16_t host_length = 0;
        if (!r.integer(n.id) || !r.integer(n.port) || !r.integer(n.resp_port) || !r.integer(state) ||
            !r.integer(host_length) || !r.bytes(host_length, n.host) || state > static_cast<std::uint8_t>(node_state::left))
            return std::nullopt;
        n.state = static_cast<node_state>(state);
        out.nodes.push_back(std::move(n));
    }
    std::uint32_t set_count = 0;
    if (!r.integer(set_count) || set_count >= slot_count || set_count > in.size() / 9) return std::nullopt;
    std::vector<std::vector<node_id>> sets(1);
    std::set<std::vector<node_id>> seen;
    for (std::uint32_t i = 0; i < set_count; ++i) {
        std::uint8_t size = 0;
        if (!r.integer(size) || size == 0) return std::nullopt;
        std::vector<node_id> set(size);
        for (auto& id : set) {
            if (!r.integer(id)) return std::nullopt;
            if (std::none_of(out.nodes.begin(), out.nodes.end(), [&](const node& n) { return n.id == id; }))
                return std::nullopt;
        }
        if (!seen.insert(set).second) return std::nullopt;
        sets.push_back(std::move(set));
    }
    std::vector<std::uint32_t> set_of(slot_count);
    for (auto& index : set_of) {
        std::uint16_t i = 0;
        if (!r.integer(i) || i >= sets.size()) return std::nullopt;
        index = i;
    }
    if (!r.done()) return std::nullopt;
    out.slots = slot_table::of(std::move(set_of), std::move(sets));
    return out;
}

}  // namespace dhtkit::protocol
