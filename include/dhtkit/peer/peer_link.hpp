#pragma once
// One long-lived connection from a client to one node of the cluster (peer/client.hpp): opened on
// first use with the handshake, reopened after a failure, skipped for a while once the node did
// not answer, and used by one caller at a time.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "dhtkit/cluster/cluster_map.hpp"
#include "dhtkit/cluster/handshake.hpp"
#include "dhtkit/peer/reply.hpp"
#include "dhtkit/protocol/messages.hpp"
#include "dhtkit/protocol/rpc.hpp"

namespace dhtkit {

// Short timeouts by default: a peer that does not answer is passed over for the next replica of
// the key, so how long a failover takes is about how long these are. A dead peer on a LAN is
// usually noticed faster still (refused or reset).
struct client_options {
    std::chrono::milliseconds connect_timeout{250};
    std::chrono::milliseconds request_timeout{800};
    std::chrono::milliseconds transfer_timeout{5000};  // a file download's longest stall
    std::chrono::milliseconds down_for{500};           // an unreachable peer is skipped this long
};

// One connection to one node, used by one caller at a time.
class peer_link {
public:
    peer_link(node to, protocol::limits lim, client_options opt, protocol::hello_request hello)
        : to_(std::move(to)), limits_(lim), options_(opt), hello_(std::move(hello)) {}

    // `even_if_down`: try a node that failed recently all the same (it is the last one to ask).
    reply call(protocol::opcode op, std::string_view key, std::string_view value, bool even_if_down = true,
               std::uint8_t flags = 0) {
        std::lock_guard lock(mutex_);
        if (!even_if_down && std::chrono::steady_clock::now() < down_until_) return unreachable();
        // One retry on a fresh connection: a node that restarted closed the old one.
        for (int attempt = 0;; ++attempt) {
            bool fresh = !rpc_.valid();
            if (fresh && !connect()) return mismatch_.empty() ? mark_down() : refused();
            auto r = round_trip(op, flags, key, value);
            if (r) return *r;
            rpc_.close();
            // A node that did not answer in time is not asked again at once: that would double
            // the wait before a failover. A connection that broke is (the node may have restarted).
            if (fresh || attempt > 0 || last_status_ == protocol::rpc_status::timed_out) return mark_down();
        }
    }

    [[nodiscard]] const node& target() const noexcept { return to_; }
    [[nodiscard]] std::string name() const { return fmt::format("peer {} ({}:{})", to_.id, to_.host, to_.port); }

private:
    // Connects and compares cluster maps. A node that follows another map is refused, not retried.
    bool connect() {
        try {
            rpc_ = protocol::rpc_stream::connect(to_.host, to_.port, limits_, options_.connect_timeout);
        } catch (const std::exception& e) {
            last_error_ = e.what();
            return false;
        }
        auto h = say_hello(rpc_, hello_, options_.request_timeout);
        if (h.agreed()) return true;
        rpc_.close();
        last_error_ = h.why;
        if (h.how == hello_result::outcome::mismatch) mismatch_ = h.why;
        return false;
    }
    reply refused() const { return {protocol::status::refused, {}, fmt::format("{}: {}", name(), mismatch_), true}; }

    reply unreachable() const {
        return {protocol::status::unavailable, {}, fmt::format("{} is unreachable: {}", name(), last_error_), false};
    }
    reply mark_down() {
        down_until_ = std::chrono::steady_clock::now() + options_.down_for;
        return unreachable();
    }

    // std::nullopt when the exchange failed (the caller may retry).
    std::optional<reply> round_trip(protocol::opcode op, std::uint8_t flags, std::string_view key, std::string_view value) {
        const std::uint64_t id = ++next_id_;
        last_status_ = rpc_.send({op, flags, protocol::status::ok, id, 0, 0}, key, value, options_.request_timeout);
        if (last_status_ != protocol::rpc_status::ok) {
            last_error_ = fmt::format("sending: {}", to_string(last_status_));
            return std::nullopt;
        }
        protocol::frame_view f;
        for (;;) {
            last_status_ = rpc_.receive(f, options_.request_timeout);
            if (last_status_ != protocol::rpc_status::ok) {
                last_error_ = fmt::format("waiting for the reply: {}", to_string(last_status_));
                return std::nullopt;
            }
            if (f.h.request_id != id) continue;  // a late answer to an abandoned request
            reply r{f.h.code, std::string(f.value), {}};
            r.flags = f.h.flags;
            if (!r.ok()) r.error = fmt::format("{}: {}{}{}", name(), to_string(r.code), r.value.empty() ? "" : ": ", r.value);
            return r;
        }
    }

    node to_;
    protocol::limits limits_;
    client_options options_;
    protocol::hello_request hello_;
    std::mutex mutex_;
    std::string mismatch_;  // guarded by mutex_; set once a node said it follows another map
    protocol::rpc_stream rpc_;                             // guarded by mutex_
    std::uint64_t next_id_ = 0;                            // guarded by mutex_
    std::string last_error_;                               // guarded by mutex_
    protocol::rpc_status last_status_ = protocol::rpc_status::ok;  // guarded by mutex_
    std::chrono::steady_clock::time_point down_until_{};  // guarded by mutex_
};

}  // namespace dhtkit
