#pragma once
// The RESP front's replies to commands that ran as our requests: each plan (protocol/resp.hpp)
// turns its share of the batch's frames, in order, into one RESP reply (an MGET's frames into
// one array, a DEL's into a count). A frame that is neither ok nor "not found" makes its
// command's reply an error: TRYAGAIN when the holder was unavailable, ERR otherwise.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "dhtkit/protocol/codec.hpp"
#include "dhtkit/protocol/frame.hpp"
#include "dhtkit/protocol/messages.hpp"
#include "dhtkit/protocol/resp.hpp"

namespace dhtkit::resp_replies {

// Appends to `out` the reply of each of `plans`, reading the frames they planned from `frames`
// in order. `now_ms` (milliseconds since the epoch) is what TTL and PTTL count from.
inline void render(const std::vector<protocol::resp_plan>& plans, std::string_view frames, std::string& out,
                   std::uint64_t now_ms) {
    using kind = protocol::resp_plan::kind;
    std::size_t at = 0;
    const auto any = protocol::frame_limits(~std::size_t{0}, ~std::size_t{0});  // our own frames
    auto next_frame = [&](protocol::header& h, std::string_view& value) {
        const auto d = protocol::decode(std::span<const std::byte, protocol::header_size>(
                                            reinterpret_cast<const std::byte*>(frames.data() + at), protocol::header_size),
                                        any);
        h = d.h;
        value = frames.substr(at + protocol::header_size + h.key_length, h.value_length);
        at += protocol::header_size + h.payload_size();
    };
    for (const auto& p : plans) {
        if (p.how == kind::text) {
            out += p.text;
            continue;
        }
        std::string failed;
        std::string_view not_found;  // the first not-found answer's words
        std::int64_t count = 0;
        thread_local std::vector<std::optional<std::string_view>> values;
        values.clear();
        for (std::uint32_t i = 0; i < p.frames; ++i) {
            protocol::header h;
            std::string_view value;
            next_frame(h, value);
            if (h.code == protocol::status::ok) {
                ++count;
                values.emplace_back(value);
            } else if (h.code == protocol::status::not_found) {
                values.emplace_back(std::nullopt);
                if (not_found.empty()) not_found = value.empty() ? std::string_view("not found") : value;
            } else if (failed.empty()) {
                failed = fmt::format("{} {}", h.code == protocol::status::unavailable ? "TRYAGAIN" : "ERR", value);
            }
        }
        if (!failed.empty()) {
            protocol::resp::error(out, failed);
            continue;
        }
        switch (p.how) {
            case kind::ok:  // writes are never "not found"; a registry change can be
                if (count == static_cast<std::int64_t>(p.frames)) protocol::resp::simple(out, "OK");
                else protocol::resp::error(out, fmt::format("ERR {}", not_found));
                break;
            case kind::bulk:
                if (values.front()) protocol::resp::bulk(out, *values.front());
                else protocol::resp::null_bulk(out);
                break;
            case kind::count_ok: protocol::resp::integer(out, count); break;
            case kind::values:
                protocol::resp::array(out, values.size());
                for (const auto& v : values) {
                    if (v) protocol::resp::bulk(out, *v);
                    else protocol::resp::null_bulk(out);
                }
                break;
            case kind::type: protocol::resp::simple(out, values.front() ? "string" : "none"); break;
            case kind::holders: {
                auto hs = values.front() ? protocol::decode_holders(*values.front())
                                         : std::optional<std::vector<protocol::holder>>(std::vector<protocol::holder>{});
                if (!hs) {
                    protocol::resp::error(out, "ERR a registry entry this peer cannot read");
                    break;
                }
                protocol::resp::array(out, hs->size());
                for (const auto& h : *hs) protocol::resp::bulk(out, fmt::format("{} {}:{}", h.peer_id, h.host, h.port));
                break;
            }
            case kind::set:
            case kind::set_get: {
                auto outcome = values.front() ? protocol::decode_put_outcome(*values.front()) : std::nullopt;
                if (!outcome) protocol::resp::error(out, "ERR a put answer this peer cannot read");
                else if (p.how == kind::set && outcome->set) protocol::resp::simple(out, "OK");
                else if (p.how == kind::set_get && outcome->had_value) protocol::resp::bulk(out, outcome->old_value);
                else protocol::resp::null_bulk(out);
                break;
            }
            case kind::first_bulk:
                if (values.front()) protocol::resp::bulk(out, *values.front());
                else protocol::resp::null_bulk(out);
                break;
            case kind::expire: protocol::resp::integer(out, values.front() ? 1 : 0); break;
            case kind::persist: protocol::resp::integer(out, values.front() && *values.front() == "\1" ? 1 : 0); break;
            case kind::ttl:
            case kind::pttl: {
                if (!values.front()) {
                    protocol::resp::integer(out, -2);
                    break;
                }
                const auto at = protocol::decode_expiry(*values.front());
                if (!at || *at == 0) {
                    protocol::resp::integer(out, -1);
                    break;
                }
                const auto left = static_cast<std::int64_t>(*at > now_ms ? *at - now_ms : 0);
                protocol::resp::integer(out, p.how == kind::pttl ? left : (left + 500) / 1000);
                break;
            }
            case kind::text: break;
        }
    }
}

}  // namespace dhtkit::resp_replies
