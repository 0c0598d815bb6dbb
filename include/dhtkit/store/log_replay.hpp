#pragma once
// Opening a log folder (see store/write_ahead_log.hpp for its files): replays the newest snapshot
// and the logs of its generation and after into the owner's table, cuts a torn tail, and refuses
// (or, with repair, moves aside) damage before it.
//
// Records apply in any order — each carries its version and the owner keeps the newest, so one
// seen twice or out of turn does no harm — so the replay scans each file on the calling thread
// and hands batches of records to helper threads that apply them beside it. The owner's `apply`
// must therefore be safe to call from several threads at once (a peer's table is).

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "dhtkit/net/unique_fd.hpp"
#include "dhtkit/store/log_files.hpp"
#include "dhtkit/store/log_format.hpp"

namespace dhtkit {

// What opening found.
struct log_recovery {
    std::size_t snapshot_records = 0;
    std::size_t log_records = 0;
    std::uint64_t generation = 0;         // of the log to append to
    std::vector<std::string> notes;       // torn tails cut, damage moved aside
    double seconds = 0;
    std::int64_t snapshot_time = 0;       // the snapshot's mtime, seconds since the epoch; 0 for none
};

// Applies records on helper threads while the caller scans. add() takes views into bytes that
// must stay put until drain() returns.
class replay_pool {
public:
    using apply_fn = std::function<void(std::string_view key, std::string_view entry)>;

    replay_pool(const apply_fn& apply, unsigned helpers) : apply_(apply) {
        for (unsigned i = 0; i < helpers; ++i) threads_.emplace_back([this] { help(); });
    }
    replay_pool(const replay_pool&) = delete;
    replay_pool& operator=(const replay_pool&) = delete;
    ~replay_pool() {
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        wake_.notify_all();
        for (auto& t : threads_) t.join();
    }

    void add(std::string_view key, std::string_view entry) {
        if (threads_.empty()) return apply_(key, entry);
        batch_.emplace_back(key, entry);
        if (batch_.size() >= batch_size) submit();
    }

    // Returns once every record added so far is applied.
    void drain() {
        if (!batch_.empty()) submit();
        std::unique_lock lock(mutex_);
        while (apply_next(lock)) {  // the caller helps rather than waits
        }
        idle_.wait(lock, [&] { return busy_ == 0 && queue_.empty(); });
    }

private:
    using batch = std::vector<std::pair<std::string_view, std::string_view>>;
    static constexpr std::size_t batch_size = 4096;

    void run(const batch& b) {
        for (const auto& [k, e] : b) apply_(k, e);
    }

    void submit() {
        std::unique_lock lock(mutex_);
        if (queue_.size() >= 2 * threads_.size()) {  // the helpers are behind: the scanner applies this one
            lock.unlock();
            run(batch_);
            batch_.clear();
            return;
        }
        queue_.push_back(std::move(batch_));
        batch_ = {};
        batch_.reserve(batch_size);
        lock.unlock();
        wake_.notify_one();
    }

    // With `lock` held: applies the next waiting batch, without the lock meanwhile. False when
    // none waits.
    bool apply_next(std::unique_lock<std::mutex>& lock) {
        if (queue_.empty()) return false;
        auto b = std::move(queue_.front());
        queue_.pop_front();
        ++busy_;
        lock.unlock();
        run(b);
        lock.lock();
        if (--busy_ == 0 && queue_.empty()) idle_.notify_all();
        return true;
    }

    void help() {
        std::unique_lock lock(mutex_);
        for (;;) {
            wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
            if (!apply_next(lock)) return;  // stopping
        }
    }

    const apply_fn& apply_;
    batch batch_;  // the caller's
    std::mutex mutex_;
    std::condition_variable wake_, idle_;
    std::deque<batch> queue_;  // guarded by mutex_
    std::size_t busy_ = 0;     // batches being applied; guarded by mutex_
    bool stopping_ = false;    // guarded by mutex_
    std::vector<std::thread> threads_;
};

// Replays the folder `dir` into `apply` (see the top); `repair` moves damage aside instead of
// refusing. Throws storage_error when it cannot open the folder as it is.
inline log_recovery replay_folder(const std::filesystem::path& dir, bool repair, const replay_pool::apply_fn& apply) {
    using clock = std::chrono::steady_clock;
    const auto start = clock::now();
    log_recovery r;
    // A snapshot that a crash left unrenamed is not one: the files before it hold everything.
    for (const auto& e : std::filesystem::directory_iterator(dir))
        if (e.path().filename().string().starts_with("snapshot.") && e.path().extension() == ".tmp")
            std::filesystem::remove(e.path());
    const auto snapshots = log_files::generations(dir, "snapshot.");
    const auto logs = log_files::generations(dir, "log.");
    replay_pool pool(apply, std::max(1u, std::thread::hardware_concurrency()) - 1);
    auto each = [&](std::string_view key, std::string_view entry) { pool.add(key, entry); };
    std::uint64_t from = 0;
    if (!snapshots.empty()) {
        from = snapshots.back();
        const auto file = log_files::snapshot_path(dir, from);
        const auto bytes = log_files::read_whole(file);
        auto s = scan_log(bytes, snapshot_magic, each);
        pool.drain();  // before `bytes` goes
        if (s.how != log_scan::end::clean)  // written whole before its rename: any damage is damage
            throw storage_error(fmt::format("{}: damaged at byte {} ({}); move it aside to start from the logs "
                                            "alone, or restore it",
                                            file.string(), s.valid_bytes, s.why));
        r.snapshot_records = s.records;
        struct stat st {};
        if (::stat(file.c_str(), &st) == 0) r.snapshot_time = st.st_mtim.tv_sec;
    }
    std::uint64_t current = std::max<std::uint64_t>(from, 1);
    for (std::size_t i = 0; i < logs.size(); ++i) {
        const auto g = logs[i];
        if (g < from) continue;  // covered by the snapshot, left by a compaction that stopped
        const auto file = log_files::log_path(dir, g);
        const auto bytes = log_files::read_whole(file);
        auto s = scan_log(bytes, log_magic, each);
        pool.drain();
        r.log_records += s.records;
        current = g;
        const bool last = i + 1 == logs.size();
        if (s.how == log_scan::end::clean) continue;
        if (s.how == log_scan::end::bad_header && bytes.size() < log_header_size && last) {
            // A log created but not yet headed when the process died: nothing in it.
            std::filesystem::resize_file(file, 0);
            r.notes.push_back(fmt::format("{}: an empty log begun at a crash; started again", file.string()));
            continue;
        }
        if (s.how == log_scan::end::torn_tail && last) {
            std::filesystem::resize_file(file, s.valid_bytes);
            r.notes.push_back(fmt::format("{}: cut a torn tail at byte {} ({}; {} bytes dropped)", file.string(),
                                          s.valid_bytes, s.why, bytes.size() - s.valid_bytes));
            continue;
        }
        if (!repair)
            throw storage_error(fmt::format("{}: damaged at byte {} ({}), with {} bytes after it; start with "
                                            "--repair to keep the {} records before it and move the rest aside",
                                            file.string(), s.valid_bytes, s.why, bytes.size() - s.valid_bytes,
                                            s.records));
        const auto aside = log_files::set_aside(file, bytes, s.valid_bytes);
        r.notes.push_back(fmt::format("{}: damaged at byte {} ({}); kept the {} records before it, moved the rest to {}",
                                      file.string(), s.valid_bytes, s.why, s.records, aside));
    }
    r.generation = current;
    r.seconds = std::chrono::duration<double>(clock::now() - start).count();
    return r;
}

}  // namespace dhtkit
