#pragma once
// A write-ahead log with snapshots, in one folder: what a peer with `[storage] mode = "log"` keeps
// so that its writes survive its restart.
//
//   log.<G>        records appended since generation G began (store/log_format.hpp)
//   snapshot.<G>   every record the owner had when generation G began, written whole
//
// Each record's `done` runs once the record is as durable as the fsync rule promises (the names
// are Redis's appendfsync):
//   always    fdatasync before `done`; the records of one write share one sync (group commit).
//             The log's thread writes and syncs: appending never waits on the disk.
//   everysec  `done` after the write() (the process may die: the OS has the bytes), a sync at most
//             a second later on the log's thread (a power cut loses about the last second)
//   no        `done` after the write(); the OS syncs when it likes
// Under everysec and no, the thread that appends writes the record itself — with whatever else
// piled up, unless another thread is writing, which then takes it along — and `done` runs before
// append() returns: a write() into the page cache, as Redis's event loop makes, costs less than
// handing the record to another thread and the reply back. It does not wait for the disk unless
// the kernel holds writers back because too much is waiting to be written out.
//
// Compaction: once the current log passes compact_after_bytes, the log thread starts generation
// G+1 (a new log file) and a compaction thread writes snapshot.<G+1> from the owner's table, then
// removes the files of older generations (store/snapshot.hpp). Writes go on meanwhile.
//
// Opening replays the newest snapshot and the logs of its generation and after (on several
// threads: `apply` must be safe to call from them at once). A torn tail of the last log (a crash
// in mid-write) is cut off and reported with the file and offset. Any other damage stops the
// opening with the file, the offset and the way out (`repair`): with it, the bytes from the
// damage on are moved aside into <file>.corrupt-at-<offset>, never deleted. See
// store/log_replay.hpp.

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "dhtkit/net/unique_fd.hpp"
#include "dhtkit/store/log_figures.hpp"
#include "dhtkit/store/log_files.hpp"
#include "dhtkit/store/log_format.hpp"
#include "dhtkit/store/log_replay.hpp"
#include "dhtkit/store/snapshot.hpp"

namespace dhtkit {

enum class fsync_rule { always, everysec, no };

struct log_options {
    fsync_rule sync = fsync_rule::everysec;
    std::uint64_t compact_after_bytes = 64u << 20;
    bool repair = false;  // move damage aside instead of refusing to open
    // A test's hook: called after a snapshot is written and synced, before it is renamed into
    // place; throwing from it leaves the files as a crash at that moment would.
    std::function<void()> before_snapshot_rename;
};

class write_ahead_log {
public:
    using entry_fn = std::function<void(std::string_view key, std::string_view entry)>;
    // Calls its argument for every record the owner holds now (for a snapshot).
    using table_source = std::function<void(const entry_fn&)>;
    using done_fn = std::function<void(bool written)>;

    // Opens (creating) the log in `dir`, replaying what it holds into `apply`. Throws
    // storage_error when it cannot.
    write_ahead_log(std::filesystem::path dir, log_options opt, const entry_fn& apply, table_source source)
        : dir_(std::move(dir)), options_(std::move(opt)), source_(std::move(source)) {
        std::filesystem::create_directories(dir_);
        recover(apply);
        thread_ = std::thread([this] { run(); });
    }
    write_ahead_log(const write_ahead_log&) = delete;
    write_ahead_log& operator=(const write_ahead_log&) = delete;
    ~write_ahead_log() { stop(); }

    // Hands one record to the log; `done` runs once it is durable as the rule says (false: the
    // disk refused it): on the log's thread under `always`, else on this thread or on the one
    // writing now, perhaps before this returns (see the top).
    void append(std::string_view key, std::string_view entry, done_fn done) {
        bool wake;
        {
            std::lock_guard lock(mutex_);
            if (stopping_) {
                if (done) done(false);
                return;
            }
            append_log_record(pending_, key, entry);
            if (done) waiting_.push_back(std::move(done));
            // A busy log thread takes what piled up when it comes back: no need to wake it.
            wake = options_.sync == fsync_rule::always && idle_;
            if (wake) idle_ = false;
        }
        if (wake) wake_.notify_one();
        if (options_.sync != fsync_rule::always) write_pending();
    }

    // Writes and syncs what was handed over, then stops the threads.
    void stop() {
        {
            std::lock_guard lock(mutex_);
            if (stopping_) return;
            stopping_ = true;
        }
        wake_.notify_all();
        if (thread_.joinable()) thread_.join();
        if (compactor_.joinable()) compactor_.join();
    }

    [[nodiscard]] const log_recovery& recovery() const noexcept { return recovery_; }

    // The figures `stats` shows.
    using figures = log_figures::figures;
    [[nodiscard]] figures report() const { return figures_.report(); }

    // Starts a compaction now (normally the log's size decides). For tests and tools.
    void compact_now() {
        {
            std::lock_guard lock(mutex_);
            compact_asked_ = true;
        }
        wake_.notify_all();  // the log thread, whatever else waits on the same condition
    }
    // Waits until no compaction is under way. For tests and tools.
    void wait_compacted() {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [&] { return !compact_asked_ && !compacting_; });
    }

    [[nodiscard]] static std::filesystem::path log_path(const std::filesystem::path& dir, std::uint64_t g) {
        return log_files::log_path(dir, g);
    }
    [[nodiscard]] static std::filesystem::path snapshot_path(const std::filesystem::path& dir, std::uint64_t g) {
        return log_files::snapshot_path(dir, g);
    }

private:
    using clock = std::chrono::steady_clock;

    // --- opening ------------------------------------------------------------------------------

    void recover(const entry_fn& apply) {
        recovery_ = replay_folder(dir_, options_.repair, apply);
        figures_.recovered(recovery_.snapshot_records, recovery_.snapshot_time);
        open_log(recovery_.generation);
    }

    // Makes log.<g> the file appended to (creating it with its header).
    void open_log(std::uint64_t g) {
        auto opened = log_files::open_log(dir_, g);
        log_fd_ = std::move(opened.fd);
        generation_ = g;
        figures_.log_opened(g, opened.bytes);
    }

    // --- the log's thread ---------------------------------------------------------------------

    bool sync_log() {
        const auto t0 = clock::now();
        const bool ok = ::fdatasync(log_fd_.get()) == 0;
        figures_.synced(static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(clock::now() - t0).count()));
        return ok;
    }

    // Writes what piled up in pending_ and runs its `done`s, unless another thread is writing
    // (it looks again once it lets go, so nothing handed over is left behind). Under everysec and
    // no; `wait` (the log's thread, stopping) takes the writer's place even when it is taken.
    void write_pending(bool wait = false) {
        std::string batch;
        std::vector<done_fn> done;
        for (;;) {
            bool ok = true;
            {
                std::unique_lock writing(write_mutex_, std::defer_lock);
                if (wait) writing.lock();
                else if (!writing.try_lock()) return;  // its holder looks at pending_ after it lets go
                {
                    std::lock_guard lock(mutex_);
                    batch.swap(pending_);
                    done.swap(waiting_);
                }
                if (batch.empty() && done.empty()) return;
                ok = write_batch(batch);
            }
            // Outside the writer's lock: a `done` may hand over another record.
            for (auto& d : done) d(ok);
            done.clear();
            batch.clear();
            std::lock_guard lock(mutex_);
            if (pending_.empty()) return;
        }
    }

    // With write_mutex_ held: appends `batch` to the current log (and syncs it under `always`).
    bool write_batch(const std::string& batch) {
        if (batch.empty()) return true;
        bool ok = net::write_all(log_fd_.get(), batch);
        if (ok && options_.sync == fsync_rule::always) ok = sync_log();
        else dirty_.store(true, std::memory_order_release);
        if (figures_.appended(batch.size()) > options_.compact_after_bytes) {
            // The log's thread starts the compaction (it may be asleep until the next sync);
            // asked before any `done` runs, so that a writer that saw its ack sees it asked.
            std::lock_guard lock(mutex_);
            if (!compacting_ && !compact_asked_) {
                compact_asked_ = true;
                wake_.notify_all();
            }
        }
        return ok;
    }

    // On the log's thread: syncs what was written since the last sync. Appenders go on writing
    // meanwhile (the log's thread is the only one that changes log_fd_).
    void sync_if_dirty() {
        if (dirty_.exchange(false, std::memory_order_acq_rel)) (void)sync_log();
    }

    void run() {
        std::string batch;
        std::vector<done_fn> done;
        auto last_sync = clock::now();
        const bool always = options_.sync == fsync_rule::always;
        for (;;) {
            bool stopping, compact;
            {
                std::unique_lock lock(mutex_);
                // Under everysec and no the appenders write: this thread syncs and compacts.
                auto ready = [&] { return stopping_ || (always && !pending_.empty()) || (compact_asked_ && !compacting_); };
                if (!ready()) {
                    idle_ = true;
                    if (options_.sync == fsync_rule::everysec) wake_.wait_until(lock, last_sync + std::chrono::seconds(1), ready);
                    else wake_.wait(lock, ready);
                }
                idle_ = false;
                if (always) {
                    batch.swap(pending_);
                    done.swap(waiting_);
                }
                stopping = stopping_;
                compact = compact_asked_ && !compacting_;
            }
            if (always) {
                bool ok;
                {
                    std::lock_guard writing(write_mutex_);
                    ok = write_batch(batch);
                }
                for (auto& d : done) d(ok);
                done.clear();
                batch.clear();
            } else if (stopping) {
                write_pending(true);  // what an appender handed over as it stopped
            }
            if (stopping || (options_.sync == fsync_rule::everysec && clock::now() - last_sync >= std::chrono::seconds(1))) {
                sync_if_dirty();
                last_sync = clock::now();
            }
            if (stopping) return;
            const auto size = figures_.log_bytes();
            if (compact || (size > options_.compact_after_bytes && !compacting())) start_compaction();
        }
    }

    bool compacting() {
        std::lock_guard lock(mutex_);
        return compacting_;
    }

    // On the log's thread: generation G+1 begins now (its log takes the next writes), and a
    // thread writes its snapshot from the owner's table.
    void start_compaction() {
        if (compactor_.joinable()) compactor_.join();  // the last one has ended (compacting_ is false)
        const auto next = generation_ + 1;
        net::unique_fd previous;
        bool opened = true;
        try {
            std::lock_guard writing(write_mutex_);  // no appender writes to the old log meanwhile
            previous.reset(::dup(log_fd_.get()));
            open_log(next);
        } catch (const storage_error&) {
            opened = false;  // the old log goes on; tried again at the next size check
        }
        // Appenders that found the writer's place taken while the log changed left their records.
        if (options_.sync != fsync_rule::always) write_pending(true);
        // The old log's last second, whole, before the snapshot that replaces it is begun.
        if (opened && options_.sync == fsync_rule::everysec && previous) (void)::fdatasync(previous.get());
        std::lock_guard lock(mutex_);
        compact_asked_ = false;
        if (!opened) {
            wake_.notify_all();
            return;
        }
        compacting_ = true;
        compactor_ = std::thread([this, next] { write_snapshot(next); });
    }

    void write_snapshot(std::uint64_t g) {
        bool ok = false;
        std::uint64_t records = 0;
        try {
            records = snapshot::write(dir_, g, source_, options_.before_snapshot_rename);
            ok = true;
        } catch (const std::exception&) {
            // Left as a crash would leave it: the older snapshot and logs still hold everything.
        }
        if (ok) figures_.compacted(records);
        std::lock_guard lock(mutex_);
        compacting_ = false;
        wake_.notify_all();
    }

    std::filesystem::path dir_;
    log_options options_;
    table_source source_;
    log_recovery recovery_;

    std::mutex mutex_;
    std::condition_variable wake_;
    std::string pending_;           // guarded by mutex_
    std::vector<done_fn> waiting_;  // guarded by mutex_
    bool stopping_ = false;         // guarded by mutex_
    bool compact_asked_ = false;    // guarded by mutex_
    bool compacting_ = false;       // guarded by mutex_
    bool idle_ = false;             // the log thread waits for work; guarded by mutex_

    // Whoever holds write_mutex_ (the constructor before the log's thread starts).
    std::mutex write_mutex_;
    net::unique_fd log_fd_;
    std::uint64_t generation_ = 0;
    std::atomic<bool> dirty_{false};  // written since the last sync

    log_figures figures_;

    std::thread thread_;
    std::thread compactor_;
};

}  // namespace dhtkit
