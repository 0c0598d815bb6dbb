#include <catch2/catch.hpp>

#include <dhtkit/net/reactor.hpp>
#include <dhtkit/net/socket.hpp>

#include <sys/resource.h>
#include <sys/socket.h>

#include <atomic>
#include <condition_variable>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace dhtkit::net;
using namespace std::chrono_literals;

namespace {

// Runs a reactor on its own thread for the life of the test.
struct loop_thread {
    epoll_reactor reactor;
    std::thread thread{[this] { reactor.run(); }};
    ~loop_thread() {
        reactor.stop();
        thread.join();
    }
};

// Waits for a condition that another thread makes true, without sleeping blindly.
struct latch_flag {
    std::mutex m;
    std::condition_variable cv;
    int count = 0;
    void add() {
        {
            std::lock_guard l(m);
            ++count;
        }
        cv.notify_all();
    }
    bool wait_for(int n, std::chrono::milliseconds limit) {
        std::unique_lock l(m);
        return cv.wait_for(l, limit, [&] { return count >= n; });
    }
};

}  // namespace

TEST_CASE("the reactor serves 1,000 concurrent loopback connections") {
    constexpr int clients = 1000;
    rlimit lim{};
    ::getrlimit(RLIMIT_NOFILE, &lim);
    if (lim.rlim_cur < 2 * clients + 64) {
        lim.rlim_cur = std::min<rlim_t>(lim.rlim_max, 2 * clients + 64);
        ::setrlimit(RLIMIT_NOFILE, &lim);
    }
    REQUIRE(lim.rlim_cur >= 2 * clients + 64);

    auto listener = tcp_listener::bind(endpoint::parse("127.0.0.1:0"));
    std::map<int, tcp_stream> connections;  // touched only on the loop thread
    loop_thread loop;
    auto& r = loop.reactor;
    r.add(listener.fd(), interest::read, trigger::level, [&](readiness) {
        while (auto s = listener.try_accept()) {
            int fd = s->fd();
            auto& conn = connections.emplace(fd, std::move(*s)).first->second;
            r.add(fd, interest::read, trigger::edge, [&r, &conn, &connections, fd](readiness) {
                // Edge-triggered: drain everything, echo it back.
                std::byte buf[256];
                for (;;) {
                    auto got = conn.receive_some(buf);
                    if (got.bytes > 0) {
                        (void)conn.send_all(std::span(buf, got.bytes), 2s);
                        continue;
                    }
                    if (!got.ok()) {
                        r.remove(fd);
                        connections.erase(fd);
                    }
                    return;
                }
            });
        }
    });

    std::vector<tcp_stream> socks;
    socks.reserve(clients);
    for (int i = 0; i < clients; ++i) socks.push_back(tcp_stream::connect(listener.local(), 5s));
    // All connected and idle at once; now every one of them talks.
    for (int i = 0; i < clients; ++i) {
        auto msg = "hello " + std::to_string(i) + "\n";
        REQUIRE(socks[static_cast<std::size_t>(i)].send_all(std::as_bytes(std::span(msg)), 5s).ok());
    }
    int echoed = 0;
    for (int i = 0; i < clients; ++i) {
        auto want = "hello " + std::to_string(i) + "\n";
        std::string got(want.size(), '\0');
        auto rr = socks[static_cast<std::size_t>(i)].receive_all(std::as_writable_bytes(std::span(got)), 5s);
        if (rr.ok() && got == want) ++echoed;
    }
    CHECK(echoed == clients);
    socks.clear();  // the server side sees the closes and cleans up on the loop thread
    std::promise<void> done;
    r.post([&] { r.remove(listener.fd()); done.set_value(); });
    done.get_future().wait();
}

TEST_CASE("a oneshot descriptor is reported once, then again only after modify re-arms it") {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) == 0);
    unique_fd a(fds[0]), b(fds[1]);
    std::atomic<int> calls{0};
    latch_flag seen;
    loop_thread loop;
    loop.reactor.add(a.get(), interest::read, trigger::oneshot, [&](readiness ready) {
        CHECK(ready.readable());
        ++calls;
        seen.add();
    });
    char x = 'x';
    REQUIRE(::write(b.get(), &x, 1) == 1);
    REQUIRE(seen.wait_for(1, 5s));
    // Still readable (nothing consumed it), but oneshot keeps quiet until re-armed. A posted
    // task runs after the loop's next round, which proves that round reported nothing.
    std::promise<void> round;
    loop.reactor.post([&] { round.set_value(); });
    round.get_future().wait();
    std::promise<void> round2;
    loop.reactor.post([&] { round2.set_value(); });
    round2.get_future().wait();
    CHECK(calls.load() == 1);
    loop.reactor.modify(a.get(), interest::read, trigger::oneshot);
    REQUIRE(seen.wait_for(2, 5s));
    CHECK(calls.load() == 2);
    loop.reactor.remove(a.get());
}

TEST_CASE("after remove a handler is not called again, even when the descriptor number is reused") {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) == 0);
    unique_fd a(fds[0]), b(fds[1]);
    std::atomic<int> old_calls{0};
    // Declared before the loop, so that they outlive its thread: a handler call may still be
    // finishing when the test's last line runs.
    latch_flag fresh;
    unique_fd c, d;
    loop_thread loop;
    loop.reactor.add(a.get(), interest::read, trigger::level, [&](readiness) { ++old_calls; });
    loop.reactor.remove(a.get());
    char x = 'x';
    REQUIRE(::write(b.get(), &x, 1) == 1);
    a.reset();
    b.reset();
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) == 0);
    c.reset(fds[0]);
    d.reset(fds[1]);
    loop.reactor.add(c.get(), interest::read, trigger::level, [&](readiness) {
        char y;
        while (::read(c.get(), &y, 1) == 1) {}
        fresh.add();
    });
    REQUIRE(::write(d.get(), &x, 1) == 1);
    REQUIRE(fresh.wait_for(1, 5s));
    CHECK(old_calls.load() == 0);
    loop.reactor.remove(c.get());
}

TEST_CASE("post runs work on the loop thread, and stop from another thread ends run") {
    epoll_reactor r;
    std::thread::id ran_on;
    std::thread loop([&] { r.run(); });
    std::promise<void> done;
    r.post([&] {
        ran_on = std::this_thread::get_id();
        CHECK(r.in_loop_thread());
        done.set_value();
    });
    done.get_future().wait();
    CHECK(ran_on == loop.get_id());
    CHECK_FALSE(r.in_loop_thread());
    r.stop();
    loop.join();
    CHECK(r.stopping());
}

TEST_CASE("adding a descriptor twice is a logic error, not a silent replacement") {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
    unique_fd a(fds[0]), b(fds[1]);
    epoll_reactor r;
    r.add(a.get(), interest::read, trigger::level, [](readiness) {});
    CHECK_THROWS_AS(r.add(a.get(), interest::read, trigger::level, [](readiness) {}), std::logic_error);
    r.remove(a.get());
}

TEST_CASE("a timer calls its task on the loop thread, again and again, until it is cancelled") {
    loop_thread loop;
    latch_flag ticks;
    std::atomic<bool> on_loop{true};
    const int id = loop.reactor.every(5ms, [&] {
        on_loop = on_loop && loop.reactor.in_loop_thread();
        ticks.add();
    });
    REQUIRE(ticks.wait_for(3, 5s));
    CHECK(on_loop);
    loop.reactor.cancel(id);
    // Once a task posted after the cancel has run, no tick can come any more.
    std::promise<int> settled;
    loop.reactor.post([&] {
        std::lock_guard l(ticks.m);
        settled.set_value(ticks.count);
    });
    const int seen = settled.get_future().get();
    latch_flag later;
    const int probe = loop.reactor.every(20ms, [&] { later.add(); });
    REQUIRE(later.wait_for(3, 5s));  // several periods of the first timer have passed
    loop.reactor.cancel(probe);
    // A tick of the probe may be running still: `later` outlives it once the loop has run this.
    std::promise<void> drained;
    loop.reactor.post([&] { drained.set_value(); });
    drained.get_future().get();
    std::lock_guard l(ticks.m);
    CHECK(ticks.count == seen);
}
