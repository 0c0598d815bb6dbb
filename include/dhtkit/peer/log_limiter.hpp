#pragma once
// At most one log line a second for one kind of refusal, however many requests are refused: a
// flood of bad requests must not become a flood of log lines. Lock-free; any thread may ask.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>

namespace dhtkit {

class log_limiter {
public:
    // True for the first caller in each second: that one writes the line.
    [[nodiscard]] bool allow() noexcept {
        const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
        auto last = last_.load(std::memory_order_relaxed);
        return now - last >= std::chrono::nanoseconds(std::chrono::seconds(1)).count() &&
               last_.compare_exchange_strong(last, now, std::memory_order_relaxed);
    }

private:
    std::atomic<std::int64_t> last_{std::numeric_limits<std::int64_t>::min() / 2};
};

}  // namespace dhtkit
