#pragma once
// A peer's counters, and the figures of its parts as `stats` lists them. Relaxed atomics: each is
// exact on its own, a report is not one instant.

#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>

#include "dhtkit/cluster/replicator.hpp"
#include "dhtkit/peer/figures.hpp"
#include "dhtkit/protocol/frame.hpp"
#include "dhtkit/store/storage.hpp"

namespace dhtkit {

class peer_stats {
public:
    void count(protocol::opcode op) noexcept {
        auto i = static_cast<std::size_t>(op);
        if (i < ops_.size()) ops_[i].fetch_add(1, std::memory_order_relaxed);
    }
    void count_error() noexcept { errors_.fetch_add(1, std::memory_order_relaxed); }
    // A wrong client password (either front): the connection is closed after the answer.
    void wrong_password() noexcept { wrong_passwords_.fetch_add(1, std::memory_order_relaxed); }
    void opened() noexcept {
        open_.fetch_add(1, std::memory_order_relaxed);
        accepted_.fetch_add(1, std::memory_order_relaxed);
    }
    void closed() noexcept { open_.fetch_sub(1, std::memory_order_relaxed); }
    void timed_out() noexcept { timed_out_.fetch_add(1, std::memory_order_relaxed); }
    void served_bytes(std::uint64_t n) noexcept { file_bytes_.fetch_add(n, std::memory_order_relaxed); }
    void reclaimed(std::uint64_t n) noexcept { reclaimed_.fetch_add(n, std::memory_order_relaxed); }
    // How often this peer's process was restarted by its supervisor, and when last (seconds since
    // the epoch, 0 for never).
    void set_restarts(std::uint64_t count, std::int64_t last) noexcept {
        restarts_ = count;
        last_restart_ = last;
    }

    // Its figures (`keys`, `files`: the tables' sizes), in the order the `stats` reply lists them.
    void report(figures& f, std::size_t keys, std::size_t files) const {
        using namespace protocol;
        auto op = [&](opcode o) { return ops_[static_cast<std::size_t>(o)].load(std::memory_order_relaxed); };
        f.add("uptime_s", std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count(), 1);
        f.add("keys", keys);
        f.add("files", files);
        f.add("connections_open", open_.load(std::memory_order_relaxed));
        f.add("connections_total", accepted_.load(std::memory_order_relaxed));
        f.add("connections_timed_out", timed_out_.load(std::memory_order_relaxed));
        const std::pair<std::string_view, opcode> counted[] = {
            {"op_put", opcode::put},       {"op_get", opcode::get},
            {"op_del", opcode::del},       {"op_register", opcode::register_file},
            {"op_unregister", opcode::unregister_file}, {"op_search", opcode::search},
            {"op_fetch", opcode::fetch},   {"op_ping", opcode::ping},
            {"op_stats", opcode::stats},   {"op_announce", opcode::announce},
            {"op_expire", opcode::expire},
        };
        for (const auto& [name, o] : counted) f.add(name, op(o));
        f.add("errors", errors_.load(std::memory_order_relaxed));
        f.add("auth_failures", wrong_passwords_.load(std::memory_order_relaxed));
        f.add("file_bytes_served", file_bytes_.load(std::memory_order_relaxed));
        f.add("expired_reclaimed", reclaimed_.load(std::memory_order_relaxed));
        f.add("pid", ::getpid());
        f.add("restarts", restarts_);
        f.add("last_restart", describe_time(last_restart_));
    }

private:
    static std::string describe_time(std::int64_t epoch_s) {
        if (epoch_s <= 0) return "never";
        std::time_t t = static_cast<std::time_t>(epoch_s);
        std::tm utc{};
        ::gmtime_r(&t, &utc);
        char buf[32];
        std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &utc);
        return buf;
    }

    std::uint64_t restarts_ = 0;     // set before serving starts
    std::int64_t last_restart_ = 0;  // set before serving starts
    std::array<std::atomic<std::uint64_t>, protocol::max_opcode + 1> ops_{};
    std::atomic<std::uint64_t> errors_{0};
    std::atomic<std::uint64_t> wrong_passwords_{0};
    std::atomic<std::int64_t> open_{0};
    std::atomic<std::uint64_t> accepted_{0};
    std::atomic<std::uint64_t> timed_out_{0};
    std::atomic<std::uint64_t> file_bytes_{0};
    std::atomic<std::uint64_t> reclaimed_{0};  // expired values freed
    std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

// Storage's figures (and what its replay found), as `stats` lists them.
inline void add_storage(figures& f, const storage_figures& s, const log_recovery* replay) {
    f.add("storage", s.mode);
    if (!s.log) return;
    const auto rule = s.sync.value_or(fsync_rule::everysec);
    f.add("fsync", rule == fsync_rule::always ? "always" : rule == fsync_rule::no ? "no" : "everysec");
    f.add("log_bytes", s.log->log_bytes);
    f.add("log_generation", s.log->generation);
    f.add("last_snapshot", s.log->last_snapshot_time);
    f.add("last_snapshot_records", s.log->last_snapshot_records);
    f.add("fsync_p99_us", s.log->fsync_p99_us);
    f.add("compactions", s.log->compactions);
    f.add("replayed_records", replay ? replay->snapshot_records + replay->log_records : 0);
    f.add("replay_seconds", replay ? replay->seconds : 0.0, 3);
}

// What the replay at start found, in the peer's log: each note (a torn tail cut, damage moved
// aside), then the count and the time.
template <class Log>
void say_recovery(const log_recovery* r, const Log& log) {
    if (!r) return;
    for (const auto& note : r->notes) log(note);
    log(fmt::format("replayed {} records ({} from the snapshot) in {:.3f} s", r->snapshot_records + r->log_records,
                    r->snapshot_records, r->seconds));
}

// The copies this node sent its co-holders, and those waiting for a holder that was away.
inline void add_copies(figures& f, const replicator& copies) {
    const auto& c = copies.counters();
    auto load = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
    f.add("copies_sent", load(c.sent));
    f.add("copies_acked", load(c.acked));
    f.add("copies_missed", load(c.missed));
    f.add("hints_pending", copies.hints());
    f.add("hints_replayed", load(c.replayed));
}

// What catching up took in, from whom, and the slots still waiting for it (sync_service).
template <class Sync>
void add_catch_up(figures& f, const Sync& sync) {
    f.add("caught_up_records", sync.caught_up_records());
    f.add("caught_up_from", sync.caught_up_from());
    f.add("slots_waiting", sync.waiting());
}

}  // namespace dhtkit
