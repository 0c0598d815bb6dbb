#pragma once
// The healer: one thread that brings this node's copies level with the other holders', in the
// background, so that no request waits for it.
//
//   map changes   each new map's work, one map at a time, in order (live membership): catch up the
//                 slots this node gained, compare every slot with members back from the dead, and
//                 re-copy registered files when the placed nodes changed;
//   anti-entropy  every `anti_entropy` period, every slot compared with its other holders by
//                 digest (both policies); slots served without a complete copy from their other
//                 holders (`unconfirmed`) sooner: after 1 s, doubling up to the period;
//   confirmed     every 10 s, `note_confirmed` (the peer writes down when nothing it serves was
//                 unconfirmed: a restart much later is refused, docs/replication.md).
//
// `Sync` is the peer's sync_service: repair(log, back), catch_up_gained(gained, log), unconfirmed().

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "dhtkit/cluster/map_diff.hpp"
#include "dhtkit/log/logger.hpp"

namespace dhtkit {

template <class Sync>
class healer {
public:
    using log_fn = logger;

    // What one new map asks of this node (cluster/map_diff.hpp).
    struct job {
        gained_slots gained;          // slots to catch up, and whom to ask
        bool files_move = false;      // the placed nodes changed: file copies follow their names' slots
        std::vector<node_id> back;    // members back from the dead: anti-entropy with each
    };

    // `recopy`: re-copies registered files to their names' holders. `anti_entropy`: zero for none.
    healer(Sync& sync, std::function<void()> recopy, std::function<void()> note_confirmed, std::chrono::seconds anti_entropy,
           log_fn log)
        : sync_(sync), recopy_(std::move(recopy)), note_confirmed_(std::move(note_confirmed)), every_(anti_entropy),
          log_(std::move(log)) {}
    healer(const healer&) = delete;
    healer& operator=(const healer&) = delete;
    ~healer() { stop(); }

    void start() {
        std::lock_guard lock(mutex_);
        if (thread_.joinable() || stopping_) return;
        thread_ = std::thread([this] { run(); });
    }

    // Finishes the job in hand (a catch-up ends when its streams do), then returns.
    void stop() {
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        wake_.notify_all();
        if (thread_.joinable()) thread_.join();
    }

    // Any thread: a new map's work, after the ones queued before it.
    void push(job j) {
        {
            std::lock_guard lock(mutex_);
            queue_.push_back(std::move(j));
        }
        wake_.notify_one();
    }

private:
    void run() {
        using namespace std::chrono_literals;
        auto retry = std::chrono::milliseconds(1000);
        auto next_pass = [&] {
            if (sync_.unconfirmed() == 0) {
                retry = 1000ms;
                return every_.count() > 0 ? std::optional(std::chrono::steady_clock::now() + every_) : std::nullopt;
            }
            const auto after = every_.count() > 0 ? std::min<std::chrono::milliseconds>(retry, every_) : retry;
            retry = std::min<std::chrono::milliseconds>(retry * 2, std::max<std::chrono::milliseconds>(every_, 1000ms));
            return std::optional(std::chrono::steady_clock::now() + after);
        };
        auto next_repair = next_pass();
        auto next_note = std::chrono::steady_clock::now();
        for (;;) {
            std::optional<job> work;
            if (std::chrono::steady_clock::now() >= next_note) {
                if (note_confirmed_) note_confirmed_();
                next_note = std::chrono::steady_clock::now() + 10s;
            }
            {
                std::unique_lock lock(mutex_);
                auto ready = [&] { return stopping_ || !queue_.empty(); };
                wake_.wait_until(lock, next_repair ? std::min(*next_repair, next_note) : next_note, ready);
                if (stopping_) return;
                if (!queue_.empty()) {
                    work = std::move(queue_.front());
                    queue_.pop_front();
                }
            }
            if (work) {
                if (!work->gained.empty()) sync_.catch_up_gained(work->gained, log_);
                for (auto id : work->back) sync_.repair(log_, id);
                if (work->files_move && recopy_) recopy_();
            } else if (next_repair && std::chrono::steady_clock::now() >= *next_repair) {
                sync_.repair(log_);
                next_repair = next_pass();
            }
        }
    }

    Sync& sync_;
    std::function<void()> recopy_;
    std::function<void()> note_confirmed_;
    std::chrono::seconds every_;
    log_fn log_;
    std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<job> queue_;  // guarded by mutex_
    bool stopping_ = false;  // guarded by mutex_
    std::thread thread_;     // started and joined under the lifecycle calls only
};

}  // namespace dhtkit
