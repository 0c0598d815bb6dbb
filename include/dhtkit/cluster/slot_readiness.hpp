#pragma once
// Which of this node's slots are caught up, and so may be served: read on every request with no
// lock, written by catch-ups (peer/sync_service.hpp).

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>

#include "dhtkit/cluster/slots.hpp"

namespace dhtkit {

// Which slots are caught up: read on every request with no lock, written by catch-ups.
class slot_readiness {
public:
    [[nodiscard]] bool ready(slot_t s) const noexcept {
        if (unready_.load(std::memory_order_acquire) == 0) return true;
        return (bits_[s / 64].load(std::memory_order_acquire) >> (s % 64)) & 1U;
    }
    void set(slot_range r, bool ready) {
        std::lock_guard lock(mutex_);
        for (std::size_t s = r.first; s <= r.last; ++s) {
            const auto bit = std::uint64_t{1} << (s % 64);
            const bool was = bits_[s / 64].load(std::memory_order_relaxed) & bit;
            if (was == ready) continue;
            if (ready) {
                bits_[s / 64].fetch_or(bit, std::memory_order_release);
                unready_.fetch_sub(1, std::memory_order_release);
            } else {
                // Counted first: a reader that sees the bit clear must not take the shortcut.
                unready_.fetch_add(1, std::memory_order_acq_rel);
                bits_[s / 64].fetch_and(~bit, std::memory_order_acq_rel);
            }
        }
    }
    [[nodiscard]] bool all_ready() const noexcept { return unready_.load(std::memory_order_acquire) == 0; }
    [[nodiscard]] std::size_t unready() const noexcept { return unready_.load(std::memory_order_acquire); }

    // The slot ranges not ready, as "first-last" separated by commas; empty when none.
    [[nodiscard]] std::string waiting() const {
        if (all_ready()) return {};
        std::string out;
        for (std::size_t s = 0; s < slot_count;) {
            if (ready(static_cast<slot_t>(s))) {
                ++s;
                continue;
            }
            auto first = s;
            while (s < slot_count && !ready(static_cast<slot_t>(s))) ++s;
            if (!out.empty()) out += ',';
            out += std::to_string(first);
            out += '-';
            out += std::to_string(s - 1);
        }
        return out;
    }

private:
    std::mutex mutex_;  // one writer at a time
    std::array<std::atomic<std::uint64_t>, slot_count / 64> bits_{};
    std::atomic<std::size_t> unready_{slot_count};
};

}  // namespace dhtkit
