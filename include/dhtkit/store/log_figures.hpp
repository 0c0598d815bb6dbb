#pragma once
// What a write-ahead log (store/write_ahead_log.hpp) shows in `stats`: the size and generation of
// the log written now, the last snapshot, the compactions, and how long its syncs take. Written
// by the log's threads and its appenders, read by whoever reports; one lock.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

namespace dhtkit {

class log_figures {
public:
    struct figures {
        std::uint64_t log_bytes = 0;  // of the current generation's log
        std::uint64_t generation = 0;
        std::int64_t last_snapshot_time = 0;  // seconds since the epoch; 0 for none
        std::uint64_t last_snapshot_records = 0;
        std::uint64_t fsync_p99_us = 0;  // over the last `kept_syncs` syncs
        std::uint64_t compactions = 0;
    };
    static constexpr std::size_t kept_syncs = 1024;

    // The log file written to from now on: generation `g`, `bytes` long.
    void log_opened(std::uint64_t g, std::uint64_t bytes) {
        std::lock_guard lock(mutex_);
        now_.log_bytes = bytes;
        now_.generation = g;
    }
    // `n` bytes appended to it; returns its size.
    std::uint64_t appended(std::uint64_t n) {
        std::lock_guard lock(mutex_);
        return now_.log_bytes += n;
    }
    [[nodiscard]] std::uint64_t log_bytes() const {
        std::lock_guard lock(mutex_);
        return now_.log_bytes;
    }
    // The snapshot found at opening (`at`: seconds since the epoch, 0 for none).
    void recovered(std::uint64_t records, std::int64_t at) {
        std::lock_guard lock(mutex_);
        now_.last_snapshot_records = records;
        now_.last_snapshot_time = at;
    }
    // A compaction wrote a snapshot of `records` records.
    void compacted(std::uint64_t records) {
        const auto at = std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::system_clock::now().time_since_epoch()).count();
        std::lock_guard lock(mutex_);
        now_.last_snapshot_records = records;
        now_.last_snapshot_time = at;
        ++now_.compactions;
    }
    // One fdatasync took `us` microseconds.
    void synced(std::uint64_t us) {
        std::lock_guard lock(mutex_);
        if (sync_us_.size() < kept_syncs) sync_us_.push_back(us);
        else sync_us_[sync_at_++ % kept_syncs] = us;
    }

    [[nodiscard]] figures report() const {
        std::lock_guard lock(mutex_);
        figures f = now_;
        if (!sync_us_.empty()) {
            auto v = sync_us_;
            auto at = v.begin() + static_cast<std::ptrdiff_t>((v.size() - 1) * 99 / 100);
            std::nth_element(v.begin(), at, v.end());
            f.fsync_p99_us = *at;
        }
        return f;
    }

private:
    mutable std::mutex mutex_;
    figures now_;                         // guarded by mutex_
    std::vector<std::uint64_t> sync_us_;  // guarded by mutex_
    std::size_t sync_at_ = 0;             // guarded by mutex_
};

}  // namespace dhtkit
