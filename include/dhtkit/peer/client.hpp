#pragma once
// The client side of the cluster: long-lived connections to every peer (opened on first use,
// reopened after a failure), requests routed to a key's home peer, and file downloads.
//
// Every call is synchronous and thread-safe; calls to different peers run in parallel, calls to
// one peer take turns on its connection.

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "dhtkit/app/config.hpp"
#include "dhtkit/cluster/placement.hpp"
#include "dhtkit/cluster/replication.hpp"
#include "dhtkit/net/socket.hpp"
#include "dhtkit/peer/file_download.hpp"
#include "dhtkit/protocol/codec.hpp"
#include "dhtkit/protocol/messages.hpp"

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

struct reply {
    protocol::status code = protocol::status::ok;
    std::string value;
    std::string error;  // set when the request did not get an answer at all, or the answer is an error
    bool answered = true;  // false when the peer could not be reached or did not reply in time

    [[nodiscard]] bool ok() const noexcept { return code == protocol::status::ok; }
};

// One connection to one peer, used by one caller at a time.
class peer_link {
public:
    peer_link(const peer_config& peer, const limits_config& lim, client_options opt)
        : peer_(peer), options_(opt), reader_({lim.max_key_bytes, lim.max_value_bytes + (1u << 16)}) {}

    // `even_if_down`: try a peer that failed recently all the same (it is the last one to ask).
    reply call(protocol::opcode op, std::string_view key, std::string_view value, bool even_if_down = true) {
        std::lock_guard lock(mutex_);
        if (!even_if_down && std::chrono::steady_clock::now() < down_until_) return unreachable();
        // One retry on a fresh connection: a peer that restarted closed the old one.
        for (int attempt = 0;; ++attempt) {
            bool fresh = !stream_.valid();
            if (fresh && !connect()) return mark_down();
            timed_out_ = false;
            auto r = round_trip(op, key, value);
            if (r) return *r;
            stream_.close();
            // A peer that did not answer in time is not asked again at once: that would double
            // the wait before a failover. A connection that broke is (the peer may have restarted).
            if (fresh || attempt > 0 || timed_out_) return mark_down();
        }
    }

    [[nodiscard]] const peer_config& peer() const noexcept { return peer_; }
    [[nodiscard]] std::string name() const { return fmt::format("peer {} ({}:{})", peer_.id, peer_.host, peer_.port); }

private:
    bool connect() {
        try {
            stream_ = net::tcp_stream::connect(net::endpoint::resolve(peer_.host, peer_.port), options_.connect_timeout);
            reader_ = protocol::frame_reader(reader_.frame_limits());
            return true;
        } catch (const std::exception& e) {
            last_error_ = e.what();
            return false;
        }
    }

    reply unreachable() const {
        return {protocol::status::unavailable, {}, fmt::format("{} is unreachable: {}", name(), last_error_), false};
    }
    reply mark_down() {
        down_until_ = std::chrono::steady_clock::now() + options_.down_for;
        return unreachable();
    }

    // std::nullopt when the connection failed (the caller may retry).
    std::optional<reply> round_trip(protocol::opcode op, std::string_view key, std::string_view value) {
        const std::uint64_t id = ++next_id_;
        out_.clear();
        protocol::append_frame(out_, {op, 0, protocol::status::ok, id, 0, 0}, key, value);
        auto sent = stream_.send_all(std::as_bytes(std::span(out_)), options_.request_timeout);
        if (!sent) {
            timed_out_ = sent.status == net::io_status::timed_out;
            last_error_ = fmt::format("sending: {}", describe(sent));
            return std::nullopt;
        }
        protocol::frame_view f;
        for (;;) {
            auto got = reader_.next(f);
            if (got == protocol::frame_reader::result::frame) {
                if (f.h.request_id != id) continue;  // a late answer to an abandoned request
                reply r{f.h.code, std::string(f.value), {}};
                if (!r.ok()) r.error = fmt::format("{}: {}{}{}", name(), to_string(r.code),
                                                   r.value.empty() ? "" : ": ", r.value);
                return r;
            }
            if (got == protocol::frame_reader::result::error) {
                last_error_ = fmt::format("bad reply: {}", to_string(reader_.last_error()));
                return std::nullopt;
            }
            auto in = stream_.receive_some(reader_.prepare(64 * 1024));
            if (!in) {
                last_error_ = fmt::format("waiting for the reply: {}", describe(in));
                return std::nullopt;
            }
            if (in.bytes == 0 && !stream_.wait_readable(options_.request_timeout)) {
                timed_out_ = true;
                last_error_ = "waiting for the reply: timed out";
                return std::nullopt;
            }
            reader_.commit(in.bytes);
        }
    }

    static std::string describe(const net::io_result& r) {
        switch (r.status) {
            case net::io_status::closed: return "the peer closed the connection";
            case net::io_status::timed_out: return "timed out";
            default: return std::system_category().message(r.error);
        }
    }

    peer_config peer_;
    client_options options_;
    std::mutex mutex_;
    net::tcp_stream stream_;          // guarded by mutex_
    protocol::frame_reader reader_;   // guarded by mutex_
    std::string out_;                 // guarded by mutex_
    std::uint64_t next_id_ = 0;       // guarded by mutex_
    std::string last_error_;          // guarded by mutex_
    std::chrono::steady_clock::time_point down_until_{};  // guarded by mutex_
    bool timed_out_ = false;                              // guarded by mutex_
};

// Requests for a key go to its home peer; when the home cannot be reached (refused, reset, timed
// out) to its replicas in turn, which serve reads and take writes for it meanwhile.
template <placement Placement = modulo_placement, replication_policy Replication = static_backup>
class client {
public:
    explicit client(cluster_config cluster, client_options opt = {})
        : cluster_(std::move(cluster)), options_(opt), replication_(cluster_.backups) {
        for (const auto& p : cluster_.peers)
            links_.push_back(std::make_unique<peer_link>(p, cluster_.limits, opt));
    }

    [[nodiscard]] const cluster_config& cluster() const noexcept { return cluster_; }
    [[nodiscard]] std::size_t peer_count() const noexcept { return links_.size(); }
    [[nodiscard]] std::size_t home_of(std::string_view key) const { return placement_.home(key, links_.size()); }

    reply call(std::size_t peer_index, protocol::opcode op, std::string_view key, std::string_view value = {}) {
        return links_.at(peer_index)->call(op, key, value);
    }

    // The peers that hold `key`, in the order requests for it try them.
    [[nodiscard]] std::vector<std::size_t> holders(std::string_view key) const {
        return holders_of(replication_, home_of(key), links_.size());
    }

    // Sends a request about `key` to the first of its holders that answers and can serve it (a
    // peer catching up after a restart answers `unavailable`).
    reply call_key(protocol::opcode op, std::string_view key, std::string_view value = {}) {
        auto order = holders(key);
        reply r;
        for (std::size_t i = 0; i < order.size(); ++i) {
            r = links_[order[i]]->call(op, key, value, i + 1 == order.size());
            if (r.answered && r.code != protocol::status::unavailable) return r;
        }
        return r;
    }

    reply put(std::string_view key, std::string_view value) {
        if (auto bad = check_key(key, value)) return *bad;
        return call_key(protocol::opcode::put, key, value);
    }
    reply get(std::string_view key) {
        if (auto bad = check_key(key, {})) return *bad;
        return call_key(protocol::opcode::get, key);
    }
    reply del(std::string_view key) {
        if (auto bad = check_key(key, {})) return *bad;
        return call_key(protocol::opcode::del, key);
    }
    reply register_holder(std::string_view name, const protocol::holder& h) {
        std::string value;
        protocol::append(value, h);
        return call_key(protocol::opcode::register_file, name, value);
    }
    reply unregister_holder(std::string_view name, std::uint32_t peer_id) {
        return call_key(protocol::opcode::unregister_file, name, protocol::encode_u32(peer_id));
    }
    // The holders of NAME (empty with not_found when nobody registered it).
    std::pair<reply, std::vector<protocol::holder>> search(std::string_view name) {
        auto r = call_key(protocol::opcode::search, name);
        if (!r.ok()) return {r, {}};
        auto holders = protocol::decode_holders(r.value);
        if (!holders) return {{protocol::status::bad_request, {}, "search: malformed holder list in the reply"}, {}};
        return {r, std::move(*holders)};
    }

    // Downloads NAME to `dest` from the first holder that delivers it whole and verified.
    download_result obtain(std::string_view name, const std::filesystem::path& dest,
                           const download_progress& progress = {}) {
        auto [found, holders] = search(name);
        if (!found.ok()) return {found.code, found.code == protocol::status::not_found
                                                 ? fmt::format("no peer has registered '{}'", name)
                                                 : found.error};
        download_result last{protocol::status::unavailable, "no holder could be reached"};
        for (const auto& h : holders) {
            last = download_file(h, name, dest, cluster_.limits, options_.connect_timeout, options_.transfer_timeout, progress);
            if (last.ok()) return last;
        }
        return last;
    }

private:
    std::optional<reply> check_key(std::string_view key, std::string_view value) const {
        using protocol::status;
        if (key.empty()) return reply{status::bad_request, {}, "the key is empty"};
        if (key.size() > cluster_.limits.max_key_bytes)
            return reply{status::too_large, {}, fmt::format("the key is {} bytes; the cluster's limit is {}",
                                                            key.size(), cluster_.limits.max_key_bytes)};
        if (value.size() > cluster_.limits.max_value_bytes)
            return reply{status::too_large, {}, fmt::format("the value is {} bytes; the cluster's limit is {}",
                                                            value.size(), cluster_.limits.max_value_bytes)};
        return std::nullopt;
    }

    cluster_config cluster_;
    client_options options_;
    Placement placement_{};
    Replication replication_;
    std::vector<std::unique_ptr<peer_link>> links_;
};

}  // namespace dhtkit
