#pragma once
// Healing's pace ([replication] heal_mb_per_s): counts the records and bytes a healing catch-up
// took in, and makes its thread sleep while it runs ahead of the rate, with a budget of one tenth
// of a second at a time, so that copying a dead peer's slots to their new holders leaves room for
// clients. One thread takes at a time (the catch-ups are serialised); the counts are read by any.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <thread>

namespace dhtkit {

class heal_pacer {
public:
    // 0: as fast as it goes.
    void set_rate(std::uint64_t bytes_per_s) noexcept { rate_.store(bytes_per_s, std::memory_order_relaxed); }

    // Counts one record of `bytes`; sleeps when this tenth of a second's budget is spent.
    void take(std::size_t bytes) {
        records_.fetch_add(1, std::memory_order_relaxed);
        bytes_.fetch_add(bytes, std::memory_order_relaxed);
        const auto rate = rate_.load(std::memory_order_relaxed);
        if (rate == 0) return;
        using clock = std::chrono::steady_clock;
        const auto now = clock::now();
        if (now - window_ > std::chrono::milliseconds(100)) {
            window_ = now;
            spent_ = 0;
        }
        spent_ += bytes;
        if (spent_ >= rate / 10) {
            std::this_thread::sleep_until(window_ + std::chrono::milliseconds(100));
            window_ = clock::now();
            spent_ = 0;
        }
    }

    [[nodiscard]] std::uint64_t records() const noexcept { return records_.load(std::memory_order_relaxed); }
    [[nodiscard]] std::uint64_t bytes() const noexcept { return bytes_.load(std::memory_order_relaxed); }

private:
    std::atomic<std::uint64_t> rate_{0};
    std::atomic<std::uint64_t> records_{0}, bytes_{0};
    std::chrono::steady_clock::time_point window_{};  // the taking thread's
    std::uint64_t spent_ = 0;                          // the taking thread's
};

}  // namespace dhtkit
