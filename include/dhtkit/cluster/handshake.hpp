#pragma once
// The greeting on a new connection: each side's cluster map must be the same (same digest), or
// they would disagree about who holds what and misroute silently — a peer started with a
// four-peer file beside peers running a three-peer one, say. The connecting side says hello with
// its digest and source; the other side answers ok, or refuses with both digests and sources.

#include <chrono>
#include <cstring>
#include <string>
#include <tuple>

#include <fmt/format.h>

#include "dhtkit/protocol/messages.hpp"
#include "dhtkit/protocol/rpc.hpp"

namespace dhtkit {

struct hello_result {
    enum class outcome { agreed, mismatch, failed };
    outcome how = outcome::failed;
    std::string why;  // for a mismatch: the other side's words, naming both maps
    [[nodiscard]] bool agreed() const noexcept { return how == outcome::agreed; }
};

// The connecting side, on a fresh connection, before anything else.
inline hello_result say_hello(protocol::rpc_stream& rpc, const protocol::hello_request& me,
                              std::chrono::milliseconds timeout) {
    constexpr std::uint64_t id = 0;  // request ids of the connection start at 1
    if (rpc.send({protocol::opcode::hello, 0, protocol::status::ok, id, 0, 0}, {}, protocol::encode(me), timeout) !=
        protocol::rpc_status::ok)
        return {hello_result::outcome::failed, "sending hello failed"};
    protocol::frame_view f;
    if (auto r = rpc.receive(f, timeout); r != protocol::rpc_status::ok)
        return {hello_result::outcome::failed, fmt::format("no answer to hello: {}", to_string(r))};
    if (f.h.code == protocol::status::ok) {
        // A nonce: the other side has a cluster secret, and takes signed requests from now on.
        if (me.secret && f.value.size() == std::tuple_size_v<protocol::session_nonce>) {
            protocol::session_nonce nonce{};
            std::memcpy(nonce.data(), f.value.data(), nonce.size());
            rpc.sign_with(protocol::frame_signer(*me.secret, nonce));
        }
        if (!me.password.empty()) {
            if (rpc.send({protocol::opcode::auth, 0, protocol::status::ok, id, 0, 0}, {}, me.password, timeout) !=
                    protocol::rpc_status::ok ||
                rpc.receive(f, timeout) != protocol::rpc_status::ok)
                return {hello_result::outcome::failed, "no answer to auth"};
            if (f.h.code != protocol::status::ok) return {hello_result::outcome::mismatch, std::string(f.value)};
        }
        return {hello_result::outcome::agreed, {}};
    }
    // A peer that does not know hello (unknown opcode) cannot tell: it is let be.
    if (f.h.code == protocol::status::unknown_opcode) return {hello_result::outcome::agreed, {}};
    return {hello_result::outcome::mismatch, std::string(f.value)};
}

// The answering side: empty when `them` follows the same map, else the refusal's words.
// `tell_mine`: name this node's own map digest and the file it came from; a protected node (a
// password or a secret) says them only in its own log, since the hello comes before either.
[[nodiscard]] inline std::string hello_refusal(const protocol::hello_request& them, std::uint64_t my_digest,
                                              std::string_view my_source, std::uint64_t my_node, bool tell_mine = true) {
    if (them.map_digest == my_digest) return {};
    const auto theirs = fmt::format("{:016x} (from {})", them.map_digest,
                                    them.source.empty() ? "settings made in code" : them.source);
    if (!tell_mine)
        return fmt::format("cluster map mismatch: peer {} follows another map than the connecting side's {}: start "
                           "every peer and client with the same cluster file (the peer's log names its own)",
                           my_node, theirs);
    return fmt::format("cluster map mismatch: peer {} follows map {:016x} (from {}), the connecting side {}: start "
                       "every peer and client with the same cluster file",
                       my_node, my_digest, my_source.empty() ? "settings made in code" : my_source, theirs);
}

}  // namespace dhtkit
