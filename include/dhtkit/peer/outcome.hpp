#pragma once
// What a service answered to one request, typed: the operation, its status, flags and request id,
// and the value (a record, a holder list, an error's words). Services record outcomes on the
// connection in request order; each front renders them in its own words when the batch is done
// (our frames in peer/front/binary.hpp, RESP replies in peer/front/resp_replies.hpp), so no front
// reads another's wire format back.

#include <cstdint>
#include <string>
#include <string_view>

#include "dhtkit/protocol/frame.hpp"

namespace dhtkit {

struct outcome {
    protocol::opcode op = protocol::opcode::ping;
    std::uint8_t flags = 0;
    protocol::status code = protocol::status::ok;
    std::uint64_t request_id = 0;
    std::string key;  // a fetch's file name; empty in other answers
    std::string value;

    outcome() = default;
    outcome(const protocol::header& h, std::string_view v) { assign(h, v); }

    // Becomes the answer that `h` describes (its operation, flags, status and request id), with
    // `v` for its value. Keeps the strings' memory: an outcome is reused batch after batch.
    outcome& assign(const protocol::header& h, std::string_view v = {}) {
        op = h.op;
        flags = h.flags;
        code = h.code;
        request_id = h.request_id;
        key.clear();
        value.assign(v);
        return *this;
    }

    [[nodiscard]] bool ok() const noexcept { return code == protocol::status::ok; }
    [[nodiscard]] protocol::header header() const noexcept {
        return {op, flags, code, request_id, static_cast<std::uint32_t>(key.size()), static_cast<std::uint32_t>(value.size())};
    }
};

// `o` as our frame, appended to `out`.
inline void append_frame(std::string& out, const outcome& o) { protocol::append_frame(out, o.header(), o.key, o.value); }

}  // namespace dhtkit
