#pragma once
// What a request came to, as the client side sees it: the status, the value, and why it failed.

#include <cstdint>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "dhtkit/peer/outcome.hpp"
#include "dhtkit/protocol/frame.hpp"

namespace dhtkit {

struct reply {
    protocol::status code = protocol::status::ok;
    std::string value;
    std::string error;  // set when the request did not get an answer at all, or the answer is an error
    bool answered = true;  // false when the peer could not be reached or did not reply in time
    std::uint8_t flags = 0;  // the reply frame's header flags

    [[nodiscard]] bool ok() const noexcept { return code == protocol::status::ok; }
};

// The reply that an outcome recorded in this process says (a request answered here).
[[nodiscard]] inline reply reply_from(const outcome& o) {
    reply r{o.code, o.value, {}};
    r.flags = o.flags;
    if (!r.ok()) r.error = fmt::format("{}{}{}", to_string(r.code), r.value.empty() ? "" : ": ", r.value);
    return r;
}

}  // namespace dhtkit
