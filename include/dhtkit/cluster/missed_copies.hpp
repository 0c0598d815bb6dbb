#pragma once
// What a replica link remembers of a replica that it cannot reach: that it is down, when to try
// it again (backing off from retry_after, doubling up to max_retry_after), and which keys it
// missed meanwhile (hinted handoff: the keys, not the records — the current record of each is
// re-sent once the replica answers). Also the vocabulary the replicator and its links share.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "dhtkit/protocol/messages.hpp"

namespace dhtkit {

struct replicator_options {
    std::chrono::milliseconds connect_timeout{250};
    std::chrono::milliseconds ack_timeout{500};
    std::chrono::milliseconds retry_after{200};  // first wait before trying a down replica again
    std::chrono::milliseconds max_retry_after{2000};
    std::size_t max_hints = 1'000'000;  // keys remembered per down replica; beyond, its catch-up covers them
};

// Told once per copy: true when the replica applied it (or already had something newer).
using ack_fn = std::function<void(bool)>;
// Told once per read asked of a replica: whether it answered, and its record of the key (empty
// when it has none).
using read_fn = std::function<void(bool, std::string_view)>;
// The current record of a key here (table byte + key), to re-send what a replica missed.
using record_source = std::function<std::optional<std::string>(protocol::table_id, std::string_view)>;

struct replication_counters {
    std::atomic<std::uint64_t> sent{0}, acked{0}, missed{0}, replayed{0}, hints_dropped{0};
};

// Not thread-safe: its link calls it with the link's lock held.
class missed_copies {
public:
    using clock = std::chrono::steady_clock;

    missed_copies(const replicator_options& opt, replication_counters& counters)
        : options_(opt), counters_(counters), retry_wait_(opt.retry_after) {}

    // A hint names a key: its table byte, then the key.
    static std::string hint_key(protocol::table_id t, std::string_view key) {
        std::string h(1, static_cast<char>(t));
        h += key;
        return h;
    }

    // Down, and not yet time to try again: copies skip it and become hints.
    [[nodiscard]] bool skipping(clock::time_point now) const noexcept { return down_ && now < retry_at_; }
    [[nodiscard]] bool down() const noexcept { return down_; }
    [[nodiscard]] clock::time_point retry_at() const noexcept { return retry_at_; }
    // Has missed keys and may be tried now.
    [[nodiscard]] bool want_retry(clock::time_point now) const noexcept {
        return !hints_.empty() && (!down_ || now >= retry_at_);
    }

    void mark_down() {
        down_ = true;
        retry_at_ = clock::now() + retry_wait_;
        retry_wait_ = std::min(retry_wait_ * 2, options_.max_retry_after);
    }
    void mark_up() noexcept {
        down_ = false;
        retry_wait_ = options_.retry_after;
    }

    void add(std::string hint) {
        if (hints_.size() < options_.max_hints) hints_.insert(std::move(hint));
        else counters_.hints_dropped.fetch_add(1, std::memory_order_relaxed);
    }
    // Up to `n` hints, taken out.
    std::vector<std::string> take(std::size_t n) {
        std::vector<std::string> batch;
        for (auto it = hints_.begin(); it != hints_.end() && batch.size() < n;)
            batch.push_back(std::move(hints_.extract(it++).value()));
        return batch;
    }
    [[nodiscard]] std::size_t size() const noexcept { return hints_.size(); }
    [[nodiscard]] bool empty() const noexcept { return hints_.empty(); }

private:
    const replicator_options& options_;
    replication_counters& counters_;
    std::unordered_set<std::string> hints_;
    bool down_ = false;
    clock::time_point retry_at_{};
    std::chrono::milliseconds retry_wait_;
};

}  // namespace dhtkit
