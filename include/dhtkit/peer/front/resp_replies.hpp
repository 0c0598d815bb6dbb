#pragma once
// The RESP front's replies to commands that ran as requests to the services: each plan turns its
// share of the batch's outcomes (peer/outcome.hpp), in order, into one RESP reply (an MGET's
// answers into one array, a DEL's into a count). An outcome that is neither ok nor "not found"
// makes its command's reply an error: TRYAGAIN when the holder was unavailable, ERR otherwise.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "dhtkit/peer/outcome.hpp"
#include "dhtkit/protocol/messages.hpp"
#include "dhtkit/protocol/resp.hpp"

namespace dhtkit::resp_replies {

// How to answer one command once the requests it became have their outcomes: the next `answers`
// of the batch's outcomes make its reply, or `text` is the whole reply.
struct plan {
    enum class kind : std::uint8_t {
        text,        // `text` is the whole reply; no outcome
        ok,          // +OK when every outcome is ok
        bulk,        // the value of an ok outcome, a null bulk for not found
        count_ok,    // how many outcomes are ok (DEL, EXISTS)
        values,      // an array of bulk-or-null, one per outcome (MGET)
        type,        // +string or +none (TYPE)
        holders,     // the holder records of a search, as an array of "id host:port" (DHT.SEARCH)
        set,         // a put with options: +OK or a null bulk when it was not made (NX, XX)
        set_get,     // the same with GET: the old value, or a null bulk
        first_bulk,  // the value of the first outcome (GETDEL: a get, then a del)
        expire,      // :1 when the key was there, :0 when not (EXPIRE, PEXPIRE)
        persist,     // :1 when an expiry was removed, else :0
        ttl,         // seconds left (-1 never, -2 no key), from a get with options
        pttl,        // the same in milliseconds
    };
    kind how = kind::text;
    std::uint32_t answers = 0;
    std::string text;
};

// Appends to `out` the reply of each of `plans`, reading the outcomes they planned from `answers`
// in order. `now_ms` (milliseconds since the epoch) is what TTL and PTTL count from.
inline void render(const std::vector<plan>& plans, std::span<const outcome> answers, std::string& out, std::uint64_t now_ms) {
    using kind = plan::kind;
    std::size_t at = 0;
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
        for (std::uint32_t i = 0; i < p.answers; ++i) {
            const auto& o = answers[at++];
            if (o.code == protocol::status::ok) {
                ++count;
                values.emplace_back(o.value);
            } else if (o.code == protocol::status::not_found) {
                values.emplace_back(std::nullopt);
                if (not_found.empty()) not_found = o.value.empty() ? std::string_view("not found") : std::string_view(o.value);
            } else if (failed.empty()) {
                failed = fmt::format("{} {}", o.code == protocol::status::unavailable ? "TRYAGAIN" : "ERR", o.value);
            }
        }
        if (!failed.empty()) {
            protocol::resp::error(out, failed);
            continue;
        }
        switch (p.how) {
            case kind::ok:  // writes are never "not found"; a registry change can be
                if (count == static_cast<std::int64_t>(p.answers)) protocol::resp::simple(out, "OK");
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
