#pragma once
// Catch-up: a peer that (re)starts asks the others for every record of the key ranges it holds
// copies of, and applies them (newer versions win) before it serves. A peer that was down misses
// the writes made meanwhile; this is how it gets them back instead of serving stale values.
//
// The request is one `sync` frame listing the homes (ring positions) wanted; the answer is a
// stream of frames, one record each, flagged `more`, ended by a frame without the flag. The asker
// is listening already, so that copies of writes made after the snapshot reach it directly.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "dhtkit/app/config.hpp"
#include "dhtkit/net/socket.hpp"
#include "dhtkit/protocol/codec.hpp"
#include "dhtkit/protocol/messages.hpp"

namespace dhtkit {

struct catch_up_result {
    std::size_t peers_answered = 0;
    std::size_t records = 0;
    std::vector<std::string> unreachable;  // "peer N: why"
};

// The limits of a frame carrying a record: a value plus its version header, or a holder list.
[[nodiscard]] inline protocol::limits record_limits(const limits_config& lim) noexcept {
    return {lim.max_key_bytes, std::max<std::size_t>(lim.max_value_bytes, 4096) + 64};
}

// Asks each peer in `from` for the records of `homes`, calling apply(key, record) for each.
// `homes` starts with the asker's own ring position.
template <class Apply>
catch_up_result catch_up(const cluster_config& cluster, const std::vector<std::size_t>& from,
                         const std::vector<std::uint32_t>& homes, Apply&& apply,
                         std::chrono::milliseconds connect_timeout, std::chrono::milliseconds io_timeout) {
    catch_up_result result;
    std::string request;
    protocol::append_frame(request, {protocol::opcode::sync, 0, protocol::status::ok, 1, 0, 0}, {},
                           protocol::encode_u32_list(homes));
    for (auto index : from) {
        const auto& p = cluster.peers.at(index);
        auto fail = [&](std::string_view why) { result.unreachable.push_back(fmt::format("peer {}: {}", p.id, why)); };
        net::tcp_stream s;
        try {
            s = net::tcp_stream::connect(net::endpoint::resolve(p.host, p.port), connect_timeout);
        } catch (const std::exception& e) {
            fail(e.what());
            continue;
        }
        if (!s.send_all(std::as_bytes(std::span(request)), io_timeout)) {
            fail("sending the request failed");
            continue;
        }
        protocol::frame_reader reader(record_limits(cluster.limits));
        bool done = false, broken = false;
        std::size_t got = 0;
        while (!done && !broken) {
            protocol::frame_view f;
            auto r = reader.next(f);
            if (r == protocol::frame_reader::result::frame) {
                if (f.h.code != protocol::status::ok) {
                    broken = true;
                    fail(fmt::format("refused: {} {}", to_string(f.h.code), f.value));
                } else if (f.h.flags & protocol::flag_more) {
                    apply(f.key, f.value);
                    ++got;
                } else {
                    done = true;
                }
                continue;
            }
            if (r == protocol::frame_reader::result::error) {
                broken = true;
                fail(fmt::format("bad frame: {}", to_string(reader.last_error())));
                continue;
            }
            auto in = s.receive_some(reader.prepare(64 * 1024));
            if (in && in.bytes == 0 && !s.wait_readable(io_timeout)) in.status = net::io_status::timed_out;
            if (!in) {
                broken = true;
                fail("the connection ended before the last record");
                continue;
            }
            reader.commit(in.bytes);
        }
        // Records applied from a peer that broke off are still good: each is a whole versioned entry.
        result.records += got;
        if (done) ++result.peers_answered;
    }
    return result;
}

}  // namespace dhtkit
