#pragma once
// Catch-up: a node that (re)starts asks the other holders of its slots for every record of those
// slots, and applies them (newer versions win) before it serves. A node that was down misses the
// writes made meanwhile; this is how it gets them back instead of serving stale values.
//
// The request is one `sync` frame: the asker's node id, then the slot ranges wanted. The answer
// is a stream of frames, one record each, flagged `more`, ended by a frame without the flag. The
// asker is listening already, so that copies of writes made after the snapshot reach it directly.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "dhtkit/cluster/cluster_map.hpp"
#include "dhtkit/protocol/messages.hpp"
#include "dhtkit/protocol/rpc.hpp"

namespace dhtkit {

struct catch_up_result {
    std::size_t peers_answered = 0;
    std::size_t records = 0;
    std::vector<std::string> unreachable;  // "peer N: why"
};

// Asks each node of `from` for the records of `ranges`, calling apply(key, record) for each.
template <class Apply>
catch_up_result catch_up(node_id asker, const std::vector<node>& from, const std::vector<slot_range>& ranges,
                         protocol::limits lim, Apply&& apply, std::chrono::milliseconds connect_timeout,
                         std::chrono::milliseconds io_timeout) {
    catch_up_result result;
    protocol::sync_request ask{asker, {}};
    for (auto r : ranges) ask.ranges.emplace_back(r.first, r.last);
    const std::string request = protocol::encode(ask);
    for (const auto& n : from) {
        auto fail = [&](std::string_view why) { result.unreachable.push_back(fmt::format("peer {}: {}", n.id, why)); };
        protocol::rpc_stream rpc;
        try {
            rpc = protocol::rpc_stream::connect(n.host, n.port, lim, connect_timeout);
        } catch (const std::exception& e) {
            fail(e.what());
            continue;
        }
        if (rpc.send({protocol::opcode::sync, 0, protocol::status::ok, 1, 0, 0}, {}, request, io_timeout) !=
            protocol::rpc_status::ok) {
            fail("sending the request failed");
            continue;
        }
        bool done = false;
        std::size_t got = 0;
        for (;;) {
            protocol::frame_view f;
            auto r = rpc.receive(f, io_timeout);
            if (r != protocol::rpc_status::ok) {
                fail(fmt::format("{} before the last record", to_string(r)));
                break;
            }
            if (f.h.code != protocol::status::ok) {
                fail(fmt::format("refused: {} {}", to_string(f.h.code), f.value));
                break;
            }
            if (!(f.h.flags & protocol::flag_more)) {
                done = true;
                break;
            }
            apply(f.key, f.value);
            ++got;
        }
        // Records applied from a node that broke off are still good: each is a whole versioned entry.
        result.records += got;
        if (done) ++result.peers_answered;
    }
    return result;
}

}  // namespace dhtkit
