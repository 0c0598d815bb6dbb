#pragma once
// What a request came to, as the client side sees it: the status, the value, and why it failed.

#include <cstdint>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "dhtkit/protocol/codec.hpp"

namespace dhtkit {

struct reply {
    protocol::status code = protocol::status::ok;
    std::string value;
    std::string error;  // set when the request did not get an answer at all, or the answer is an error
    bool answered = true;  // false when the peer could not be reached or did not reply in time
    std::uint8_t flags = 0;  // the reply frame's header flags

    [[nodiscard]] bool ok() const noexcept { return code == protocol::status::ok; }
};

// The reply that one whole frame carries (a request answered in this process).
[[nodiscard]] inline reply reply_from_frame(std::string_view frame) {
    protocol::frame_reader reader({protocol::frame_allowance, frame.size()});
    reader.feed(frame);
    protocol::frame_view f;
    if (reader.next(f) != protocol::frame_reader::result::frame)
        return {protocol::status::internal_error, {}, "not a whole reply frame", false};
    reply r{f.h.code, std::string(f.value), {}};
    if (!r.ok()) r.error = fmt::format("{}{}{}", to_string(r.code), r.value.empty() ? "" : ": ", r.value);
    return r;
}

}  // namespace dhtkit
