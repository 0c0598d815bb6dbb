#pragma once
// A peer's counters. Relaxed atomics: each is exact on its own, a report is not one instant.

#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <string>

#include <fmt/format.h>

#include "dhtkit/protocol/frame.hpp"

namespace dhtkit {

class peer_stats {
public:
    void count(protocol::opcode op) noexcept {
        auto i = static_cast<std::size_t>(op);
        if (i < ops_.size()) ops_[i].fetch_add(1, std::memory_order_relaxed);
    }
    void count_error() noexcept { errors_.fetch_add(1, std::memory_order_relaxed); }
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

    // "name=value" lines, the payload of a stats reply.
    [[nodiscard]] std::string report(std::size_t keys, std::size_t files) const {
        using namespace protocol;
        auto op = [&](opcode o) { return ops_[static_cast<std::size_t>(o)].load(std::memory_order_relaxed); };
        auto uptime = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
        return fmt::format(
            "uptime_s={:.1f}\nkeys={}\nfiles={}\nconnections_open={}\nconnections_total={}\nconnections_timed_out={}\n"
            "op_put={}\nop_get={}\nop_del={}\nop_register={}\nop_unregister={}\nop_search={}\n"
            "op_fetch={}\nop_ping={}\nop_stats={}\nop_announce={}\nop_expire={}\nerrors={}\nfile_bytes_served={}\n"
            "expired_reclaimed={}\npid={}\nrestarts={}\nlast_restart={}\n",
            uptime, keys, files, open_.load(std::memory_order_relaxed),
            accepted_.load(std::memory_order_relaxed), timed_out_.load(std::memory_order_relaxed), op(opcode::put), op(opcode::get),
            op(opcode::del), op(opcode::register_file), op(opcode::unregister_file),
            op(opcode::search), op(opcode::fetch), op(opcode::ping), op(opcode::stats),
            op(opcode::announce), op(opcode::expire), errors_.load(std::memory_order_relaxed),
            file_bytes_.load(std::memory_order_relaxed), reclaimed_.load(std::memory_order_relaxed), ::getpid(), restarts_,
            describe_time(last_restart_));
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
    std::atomic<std::int64_t> open_{0};
    std::atomic<std::uint64_t> accepted_{0};
    std::atomic<std::uint64_t> timed_out_{0};
    std::atomic<std::uint64_t> file_bytes_{0};
    std::atomic<std::uint64_t> reclaimed_{0};  // expired values freed
    std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

}  // namespace dhtkit
