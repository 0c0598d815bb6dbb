#pragma once
// The reactor policy: a loop that watches descriptors and calls their handlers when they are
// ready. `reactor` names what the peer needs; `epoll_reactor` is the Linux implementation. The
// concept speaks of interests and triggers, not of epoll, so that an io_uring poller can stand in.
//
// Threading: run() belongs to one thread (the loop thread). add/modify/remove/post/every/cancel/
// stop may be called from any thread; post() is the one door through which other threads hand the
// loop work. Timers live in the loop (every()), so that no component needs a polling thread of its own.

#include <sys/epoll.h>
#include <sys/timerfd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "dhtkit/net/unique_fd.hpp"
#include "dhtkit/net/wakeup.hpp"

namespace dhtkit::net {

// What a handler wants to hear about.
enum class interest : std::uint32_t { read = 1, write = 2, read_write = 3 };

// level: told while ready. edge: told on each change. oneshot: told once, then silent until
// modify() re-arms it; the way to hand a descriptor to exactly one worker at a time.
enum class trigger { level, edge, oneshot };

// What a handler is told.
struct readiness {
    std::uint32_t raw = 0;
    [[nodiscard]] bool readable() const noexcept { return raw & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR); }
    [[nodiscard]] bool writable() const noexcept { return raw & (EPOLLOUT | EPOLLERR); }
    [[nodiscard]] bool hangup() const noexcept { return raw & (EPOLLHUP | EPOLLRDHUP | EPOLLERR); }
};

template <class R>
concept reactor = requires(R& r, int fd, interest what, trigger how,
                           std::function<void(readiness)> handler, std::function<void()> task) {
    r.add(fd, what, how, std::move(handler));
    r.modify(fd, what, how);
    r.remove(fd);
    r.post(std::move(task));
    { r.every(std::chrono::milliseconds(1), std::move(task)) } -> std::same_as<int>;
    r.cancel(fd);
    r.run();
    r.stop();
    { r.in_loop_thread() } -> std::same_as<bool>;
};

class epoll_reactor {
public:
    using handler = std::function<void(readiness)>;

    epoll_reactor()
        : epoll_(::epoll_create1(EPOLL_CLOEXEC)) {
        if (!epoll_)
            throw std::system_error(errno, std::generic_category(), "epoll_reactor: epoll_create1");
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = wake_tag;
        if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.fd(), &ev) != 0)
            throw std::system_error(errno, std::generic_category(), "epoll_reactor: watch eventfd");
    }
    epoll_reactor(const epoll_reactor&) = delete;
    epoll_reactor& operator=(const epoll_reactor&) = delete;

    // Watches `fd` (not owned) and calls `h` on the loop thread when it is ready.
    void add(int fd, interest what, trigger how, handler h) {
        std::uint32_t generation;
        {
            std::lock_guard lock(mutex_);
            if (static_cast<std::size_t>(fd) >= slots_.size())
                slots_.resize(static_cast<std::size_t>(fd) + 1);
            auto& slot = slots_[static_cast<std::size_t>(fd)];
            if (slot.entry) throw std::logic_error(fmt::format("epoll_reactor: fd {} is already watched", fd));
            slot.entry = std::make_shared<handler>(std::move(h));
            generation = ++slot.generation;
        }
        control(EPOLL_CTL_ADD, fd, generation, what, how);
    }

    // Changes what `fd` is watched for; re-arms a oneshot descriptor.
    void modify(int fd, interest what, trigger how) {
        std::uint32_t generation;
        {
            std::lock_guard lock(mutex_);
            generation = slots_.at(static_cast<std::size_t>(fd)).generation;
        }
        control(EPOLL_CTL_MOD, fd, generation, what, how);
    }

    // Stops watching `fd`. Its handler is not called afterwards, except for a call already
    // running on the loop thread; the caller still owns and closes the descriptor.
    void remove(int fd) {
        std::shared_ptr<handler> dropped;  // destroyed outside the lock
        {
            std::lock_guard lock(mutex_);
            if (static_cast<std::size_t>(fd) >= slots_.size()) return;
            auto& slot = slots_[static_cast<std::size_t>(fd)];
            dropped = std::move(slot.entry);
            ++slot.generation;
        }
        ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
    }

    // Runs `task` on the loop thread, soon.
    void post(std::function<void()> task) {
        {
            std::lock_guard lock(mutex_);
            posted_.push_back(std::move(task));
        }
        wake();
    }

    // Calls `task` on the loop thread every `period` (a late loop calls it once, not once per missed
    // period) until cancel() is given the id returned.
    int every(std::chrono::milliseconds period, std::function<void()> task) {
        unique_fd t(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
        if (!t) throw std::system_error(errno, std::generic_category(), "epoll_reactor: timerfd_create");
        const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::max(period, std::chrono::milliseconds(1)));
        itimerspec spec{};
        spec.it_interval.tv_sec = static_cast<time_t>(ns.count() / 1'000'000'000);
        spec.it_interval.tv_nsec = static_cast<long>(ns.count() % 1'000'000'000);
        spec.it_value = spec.it_interval;
        if (::timerfd_settime(t.get(), 0, &spec, nullptr) != 0)
            throw std::system_error(errno, std::generic_category(), "epoll_reactor: timerfd_settime");
        const int id = t.get();
        {
            std::lock_guard lock(mutex_);
            timers_.emplace(id, std::move(t));
        }
        add(id, interest::read, trigger::level, [id, task = std::move(task)](readiness) {
            std::uint64_t expirations;
            if (::read(id, &expirations, sizeof expirations) == sizeof expirations) task();
        });
        return id;
    }
    void cancel(int timer) {
        remove(timer);
        unique_fd closing;  // closed outside the lock
        std::lock_guard lock(mutex_);
        if (auto it = timers_.find(timer); it != timers_.end()) {
            closing = std::move(it->second);
            timers_.erase(it);
        }
    }

    void run() {
        loop_thread_.store(std::this_thread::get_id(), std::memory_order_relaxed);
        while (!stopping_.load(std::memory_order_acquire)) run_once(-1);
        run_posted();  // work handed over before stop() still runs
        loop_thread_.store(std::thread::id{}, std::memory_order_relaxed);
    }

    // One round of waiting (up to `timeout_ms`, -1 for ever) and dispatching. Returns the number
    // of descriptor events handled.
    int run_once(int timeout_ms) {
        std::array<epoll_event, 256> ready;
        int n = ::epoll_wait(epoll_.get(), ready.data(), static_cast<int>(ready.size()), timeout_ms);
        if (n < 0) {
            if (errno == EINTR) return 0;
            throw std::system_error(errno, std::generic_category(), "epoll_wait");
        }
        int handled = 0;
        for (int i = 0; i < n; ++i) {
            std::uint64_t tag = ready[static_cast<std::size_t>(i)].data.u64;
            if (tag == wake_tag) {
                wake_.drain();
                continue;
            }
            int fd = static_cast<int>(tag & 0xffffffffu);
            auto generation = static_cast<std::uint32_t>(tag >> 32);
            std::shared_ptr<handler> h;
            {
                std::lock_guard lock(mutex_);
                auto idx = static_cast<std::size_t>(fd);
                // A stale event for a descriptor removed (and perhaps reused) since epoll_wait.
                if (idx >= slots_.size() || slots_[idx].generation != generation) continue;
                h = slots_[idx].entry;
            }
            if (h) {
                (*h)(readiness{ready[static_cast<std::size_t>(i)].events});
                ++handled;
            }
        }
        run_posted();
        return handled;
    }

    void stop() {
        stopping_.store(true, std::memory_order_release);
        wake();
    }
    [[nodiscard]] bool stopping() const noexcept { return stopping_.load(std::memory_order_acquire); }

    [[nodiscard]] bool in_loop_thread() const noexcept {
        return loop_thread_.load(std::memory_order_relaxed) == std::this_thread::get_id();
    }

    void wake() noexcept { wake_.notify(); }

private:
    static constexpr std::uint64_t wake_tag = ~std::uint64_t{0};

    struct slot {
        std::shared_ptr<handler> entry;
        std::uint32_t generation = 0;
    };

    void control(int op, int fd, std::uint32_t generation, interest what, trigger how) {
        epoll_event ev{};
        auto bits = static_cast<std::uint32_t>(what);
        if (bits & static_cast<std::uint32_t>(interest::read)) ev.events |= EPOLLIN | EPOLLRDHUP;
        if (bits & static_cast<std::uint32_t>(interest::write)) ev.events |= EPOLLOUT;
        if (how == trigger::edge) ev.events |= EPOLLET;
        if (how == trigger::oneshot) ev.events |= EPOLLONESHOT;
        ev.data.u64 = (std::uint64_t{generation} << 32) | static_cast<std::uint32_t>(fd);
        if (::epoll_ctl(epoll_.get(), op, fd, &ev) != 0)
            throw std::system_error(errno, std::generic_category(),
                                    fmt::format("epoll_ctl({}) on fd {}", op == EPOLL_CTL_ADD ? "add" : "modify", fd));
    }

    void run_posted() {
        std::vector<std::function<void()>> tasks;
        {
            std::lock_guard lock(mutex_);
            tasks.swap(posted_);
        }
        for (auto& t : tasks) t();
    }

    unique_fd epoll_;
    wakeup wake_;
    std::mutex mutex_;  // guards slots_, posted_ and timers_
    std::vector<slot> slots_;
    std::map<int, unique_fd> timers_;
    std::vector<std::function<void()>> posted_;
    std::atomic<bool> stopping_{false};
    std::atomic<std::thread::id> loop_thread_{};
};

static_assert(reactor<epoll_reactor>);

}  // namespace dhtkit::net
