#pragma once
// The cluster map on the wire: the `map` reply (protocol.md). Here rather than in protocol/,
// which knows no cluster types; the byte helpers are protocol/messages.hpp's.

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dhtkit/cluster/cluster_map.hpp"
#include "dhtkit/protocol/messages.hpp"

namespace dhtkit::protocol {

// A `map` reply: the map's epoch, then its nodes (id, port, resp_port, state, host). The slots
// are not sent: the replication policy places them from the nodes, the same on every side.
inline std::string encode_nodes(std::uint64_t epoch, const std::vector<node>& nodes) {
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
    return out;
}

struct node_list {
    std::uint64_t epoch = 0;
    std::vector<node> nodes;
};

inline std::optional<node_list> decode_nodes(std::string_view in) {
    detail::reader r(in);
    node_list out;
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
    if (!r.done()) return std::nullopt;
    return out;
}

}  // namespace dhtkit::protocol
