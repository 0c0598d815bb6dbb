#pragma once
// Lock policies for the table (spdlog's sinks are the model: the lock is a template parameter).
// Any BasicLockable type is a lock policy; one that also has lock_shared() lets readers share.
//
//   std::mutex           exclusive, sleeps when contended
//   std::shared_mutex    shared reads, sleeps when contended
//   spinlock             exclusive, spins briefly then yields; for very short critical sections
//   shared_spinlock      shared reads, spins briefly then yields
//   null_lock            no locking at all, for single-threaded use

#include <atomic>
#include <concepts>
#include <cstdint>
#include <thread>

namespace dhtkit {

template <class L>
concept lock_policy = requires(L& l) {
    l.lock();
    l.unlock();
};

template <class L>
concept shared_lock_policy = lock_policy<L> && requires(L& l) {
    l.lock_shared();
    l.unlock_shared();
};

namespace detail {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

// Spins a little, then yields the CPU: on a machine with fewer cores than threads a spinning
// waiter would otherwise burn the time slice the lock holder needs to finish.
class backoff {
public:
    void pause() noexcept {
        if (spins_ < 64) {
            for (unsigned i = 0; i < (1u << (spins_ / 16)); ++i) cpu_relax();
            ++spins_;
        } else {
            std::this_thread::yield();
        }
    }

private:
    unsigned spins_ = 0;
};

}  // namespace detail

class spinlock {
public:
    void lock() noexcept {
        detail::backoff wait;
        for (;;) {
            if (!locked_.exchange(true, std::memory_order_acquire)) return;
            while (locked_.load(std::memory_order_relaxed)) wait.pause();
        }
    }
    bool try_lock() noexcept {
        return !locked_.load(std::memory_order_relaxed) &&
               !locked_.exchange(true, std::memory_order_acquire);
    }
    void unlock() noexcept { locked_.store(false, std::memory_order_release); }

private:
    std::atomic<bool> locked_{false};
};

// Readers count up in steps of 2; bit 0 marks a writer holding or waiting for the lock, so that a
// stream of readers cannot starve a writer.
class shared_spinlock {
public:
    // Each path starts with the read-modify-write it hopes will succeed: a load first would fetch
    // the cache line shared, then again exclusive.
    void lock() noexcept {
        detail::backoff wait;
        std::uint32_t s = 0;
        while (!state_.compare_exchange_weak(s, s | writer, std::memory_order_acquire)) {
            if (s & writer) {
                wait.pause();
                s = state_.load(std::memory_order_relaxed) & ~writer;
            }
        }
        while (state_.load(std::memory_order_acquire) != writer) wait.pause();
    }
    void unlock() noexcept { state_.fetch_and(~writer, std::memory_order_release); }

    void lock_shared() noexcept {
        detail::backoff wait;
        while (state_.fetch_add(reader, std::memory_order_acquire) & writer) {
            state_.fetch_sub(reader, std::memory_order_relaxed);
            while (state_.load(std::memory_order_relaxed) & writer) wait.pause();
        }
    }
    void unlock_shared() noexcept { state_.fetch_sub(reader, std::memory_order_release); }

private:
    static constexpr std::uint32_t writer = 1;
    static constexpr std::uint32_t reader = 2;
    std::atomic<std::uint32_t> state_{0};
};

struct null_lock {
    void lock() noexcept {}
    bool try_lock() noexcept { return true; }
    void unlock() noexcept {}
    void lock_shared() noexcept {}
    void unlock_shared() noexcept {}
};

// Readers share when the policy allows it.
template <lock_policy L>
class read_guard {
public:
    explicit read_guard(L& l) noexcept(noexcept(l.lock())) : lock_(l) {
        if constexpr (shared_lock_policy<L>) lock_.lock_shared(); else lock_.lock();
    }
    ~read_guard() {
        if constexpr (shared_lock_policy<L>) lock_.unlock_shared(); else lock_.unlock();
    }
    read_guard(const read_guard&) = delete;
    read_guard& operator=(const read_guard&) = delete;

private:
    L& lock_;
};

}  // namespace dhtkit
