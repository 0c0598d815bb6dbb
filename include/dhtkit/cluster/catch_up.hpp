#pragma once
// Catch-up, the asking side: a node that (re)starts asks another holder of its slots for every
// record of the slot ranges they share, and applies them (newer versions win). A node that was
// down misses the writes made meanwhile; this is how it gets them back instead of serving stale
// values. Which holders to ask, and when the node has heard enough to serve, is the sync
// service's business (peer/sync_service.hpp); this is one exchange with one holder.
//
// The request is one `sync` frame: the asker's node id, then the slot ranges wanted. The answer
// is a stream of frames, one record each, flagged `more`, ended by a frame without the flag whose
// value says whether the answering node was itself serving (1) or still catching up (0). The
// asker is listening already, so that copies of writes made after the snapshot reach it directly.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "dhtkit/cluster/cluster_map.hpp"
#include "dhtkit/cluster/handshake.hpp"
#include "dhtkit/protocol/messages.hpp"
#include "dhtkit/protocol/rpc.hpp"

namespace dhtkit {

struct sync_outcome {
    enum class ended { complete, cut_short, unreachable, refused, other_map };
    ended how = ended::unreachable;
    bool from_serving = false;  // complete, from a node that was serving the slots itself
    std::size_t records = 0;    // applied, even from a stream cut short: each is a whole entry
    std::string why;            // for an incomplete one

    [[nodiscard]] bool complete() const noexcept { return how == ended::complete; }
};

// Asks node `from` for the records of `ranges`, calling apply(key, record) for each. With
// `digests` (this node's digest of every slot, by slot number), the slots whose digests agree
// with `from`'s are left out of the answer.
template <class Apply>
sync_outcome catch_up_from(node_id asker, const protocol::hello_request& hello, const node& from,
                           const std::vector<slot_range>& ranges, protocol::limits lim, Apply&& apply,
                           std::chrono::milliseconds connect_timeout, std::chrono::milliseconds io_timeout,
                           const std::vector<std::uint64_t>* digests = nullptr) {
    sync_outcome out;
    protocol::sync_request ask{asker, {}};
    for (auto r : ranges) {
        ask.ranges.emplace_back(r.first, r.last);
        if (digests)
            for (std::size_t s = r.first; s <= r.last; ++s) ask.digests.push_back((*digests)[s]);
    }
    protocol::rpc_stream rpc;
    try {
        rpc = protocol::rpc_stream::connect(from.host, from.port, lim, connect_timeout);
    } catch (const std::exception& e) {
        out.why = e.what();
        return out;
    }
    if (auto h = say_hello(rpc, hello, io_timeout); !h.agreed()) {
        out.how = h.how == hello_result::outcome::mismatch ? sync_outcome::ended::other_map : sync_outcome::ended::unreachable;
        out.why = h.why;
        return out;
    }
    const std::uint8_t flags = ask.digests.empty() ? 0 : protocol::flag_digests;
    if (rpc.send({protocol::opcode::sync, flags, protocol::status::ok, 1, 0, 0}, {}, protocol::encode(ask), io_timeout) !=
        protocol::rpc_status::ok) {
        out.why = "sending the request failed";
        return out;
    }
    for (;;) {
        protocol::frame_view f;
        auto r = rpc.receive(f, io_timeout);
        if (r != protocol::rpc_status::ok) {
            out.how = sync_outcome::ended::cut_short;
            out.why = fmt::format("{} after {} records, before the last", to_string(r), out.records);
            return out;
        }
        if (f.h.code != protocol::status::ok) {
            out.how = sync_outcome::ended::refused;
            out.why = fmt::format("refused: {} {}", to_string(f.h.code), f.value);
            return out;
        }
        if (!(f.h.flags & protocol::flag_more)) {
            out.how = sync_outcome::ended::complete;
            out.from_serving = f.value == std::string_view("\1", 1);
            return out;
        }
        apply(f.key, f.value);
        ++out.records;
    }
}

}  // namespace dhtkit
