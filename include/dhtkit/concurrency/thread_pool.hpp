#pragma once
// The executor policy and the fixed-size thread pool that implements it.
//
// post() queues fire-and-forget work; submit() returns a future. Idle workers sleep on a
// condition variable, and a producer only signals when a worker is asleep and no earlier signal
// is still on its way, so a busy pool takes tasks without system calls. A worker takes a fair
// share of the queue per lock (up to 64 tasks), not one task at a time.
//
// stop() refuses new work, lets the workers finish everything already queued, and joins them.
// An exception thrown by a posted task is counted (failed_tasks()) and never ends a worker; one
// thrown inside submit()'s callable reaches the future instead.

#include <algorithm>
#include <atomic>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <future>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "dhtkit/concurrency/task.hpp"

namespace dhtkit {

// What the peer needs from an executor: made with a count of workers (the config's), it runs work
// on some other thread and refuses it once stopped.
template <class E>
concept executor = std::constructible_from<E, std::size_t> && requires(E& e, task t) {
    { e.post(std::move(t)) } -> std::same_as<bool>;
    { e.size() } -> std::convertible_to<std::size_t>;
    e.stop();
};

struct pool_stopped : std::runtime_error {
    pool_stopped() : std::runtime_error("thread_pool: stopped, the task was not queued") {}
};

class thread_pool {
public:
    explicit thread_pool(std::size_t workers) {
        if (workers == 0) throw std::invalid_argument("thread_pool: expected at least 1 worker");
        queue_.resize(64);
        threads_.reserve(workers);
        for (std::size_t i = 0; i < workers; ++i) threads_.emplace_back([this] { work(); });
    }
    thread_pool(const thread_pool&) = delete;
    thread_pool& operator=(const thread_pool&) = delete;
    ~thread_pool() { stop(); }

    [[nodiscard]] std::size_t size() const noexcept { return threads_.size(); }

    // Queues `t`; false (and `t` not run) when the pool is stopping.
    bool post(task t) {
        bool signal = false;
        {
            std::lock_guard lock(mutex_);
            if (stopping_) return false;
            push(std::move(t));
            if (sleeping_ > signals_) {
                ++signals_;
                signal = true;
            }
        }
        if (signal) wake_.notify_one();
        return true;
    }

    // Runs `f` on a worker; the future holds its result or exception, or pool_stopped.
    template <class F, class R = std::invoke_result_t<std::decay_t<F>&>>
    std::future<R> submit(F&& f) {
        std::promise<R> promise;
        auto future = promise.get_future();
        auto run = [p = std::move(promise), fn = std::decay_t<F>(std::forward<F>(f))]() mutable {
            try {
                if constexpr (std::is_void_v<R>) {
                    fn();
                    p.set_value();
                } else {
                    p.set_value(fn());
                }
            } catch (...) {
                p.set_exception(std::current_exception());
            }
        };
        if (!post(task(std::move(run)))) {
            std::promise<R> refused;
            refused.set_exception(std::make_exception_ptr(pool_stopped{}));
            return refused.get_future();
        }
        return future;
    }

    // Idempotent; returns when every queued task has run and the workers have exited.
    void stop() {
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        wake_.notify_all();
        for (auto& t : threads_)
            if (t.joinable()) t.join();
    }

    [[nodiscard]] std::size_t failed_tasks() const noexcept {
        return failed_.load(std::memory_order_relaxed);
    }

private:
    // The queue is a ring buffer that doubles when full, so steady traffic never allocates.
    void push(task&& t) {
        if (count_ == queue_.size()) {
            std::vector<task> bigger(queue_.size() * 2);
            for (std::size_t i = 0; i < count_; ++i)
                bigger[i] = std::move(queue_[(head_ + i) % queue_.size()]);
            queue_.swap(bigger);
            head_ = 0;
        }
        queue_[(head_ + count_) % queue_.size()] = std::move(t);
        ++count_;
    }

    void work() {
        std::vector<task> batch;
        batch.reserve(64);
        for (;;) {
            {
                std::unique_lock lock(mutex_);
                while (count_ == 0 && !stopping_) {
                    ++sleeping_;
                    wake_.wait(lock);
                    --sleeping_;
                    if (signals_ > 0) --signals_;
                }
                if (count_ == 0) return;  // stopping, and nothing left to drain
                std::size_t share = std::clamp<std::size_t>(count_ / threads_.size(), 1, 64);
                for (std::size_t i = 0; i < share; ++i) {
                    batch.push_back(std::move(queue_[head_]));
                    head_ = (head_ + 1) % queue_.size();
                }
                count_ -= share;
                // More left than this worker took: make sure a sleeping peer hears of it.
                if (count_ > 0 && sleeping_ > signals_) {
                    ++signals_;
                    wake_.notify_one();
                }
            }
            for (auto& t : batch) {
                try {
                    t();
                } catch (...) {
                    failed_.fetch_add(1, std::memory_order_relaxed);
                }
            }
            batch.clear();
        }
    }

    std::mutex mutex_;
    std::condition_variable wake_;
    std::vector<task> queue_;      // guarded by mutex_
    std::size_t head_ = 0;         // guarded by mutex_
    std::size_t count_ = 0;        // guarded by mutex_
    std::size_t sleeping_ = 0;     // workers waiting on wake_; guarded by mutex_
    std::size_t signals_ = 0;      // notifies not yet consumed; guarded by mutex_
    bool stopping_ = false;        // guarded by mutex_
    std::atomic<std::size_t> failed_{0};
    std::vector<std::thread> threads_;
};

static_assert(executor<thread_pool>);

}  // namespace dhtkit
