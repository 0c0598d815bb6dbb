#include <catch2/catch.hpp>

#include <dhtkit/concurrency/thread_pool.hpp>

#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <latch>
#include <thread>
#include <vector>

using namespace dhtkit;

static_assert(executor<thread_pool>);  // made from a count, as the peer makes it
using namespace std::chrono_literals;

TEST_CASE("every posted task runs exactly once") {
    constexpr int n = 200000;
    std::vector<std::atomic<int>> runs(n);
    {
        thread_pool pool(3);
        for (int i = 0; i < n; ++i)
            REQUIRE(pool.post([&runs, i] { runs[static_cast<std::size_t>(i)].fetch_add(1); }));
    }  // the destructor drains
    int wrong = 0;
    for (auto& r : runs) wrong += r.load() != 1;
    CHECK(wrong == 0);
}

namespace {
// Not std::runtime_error: its message is a reference-counted string whose count lives in the
// uninstrumented libstdc++, so ThreadSanitizer reports a false race when two threads drop copies.
struct boom : std::exception {
    const char* what() const noexcept override { return "boom"; }
};
}  // namespace

TEST_CASE("submit returns the callable's result, or its exception, through the future") {
    thread_pool pool(2);
    CHECK(pool.submit([] { return 6 * 7; }).get() == 42);
    auto failing = pool.submit([]() -> int { throw boom{}; });
    CHECK_THROWS_WITH(failing.get(), "boom");
    auto unit = pool.submit([] {});
    unit.get();
}

TEST_CASE("a task that throws does not kill its worker") {
    thread_pool pool(1);
    for (int i = 0; i < 10; ++i) pool.post([] { throw std::runtime_error("task failure"); });
    CHECK(pool.submit([] { return 1; }).get() == 1);
    CHECK(pool.failed_tasks() == 10);
}

TEST_CASE("stop runs everything already queued, then refuses new work") {
    thread_pool pool(2);
    std::latch gate(1);
    std::atomic<int> ran{0};
    // Both workers block on the gate, so the rest stays queued until stop.
    for (int i = 0; i < 2; ++i) pool.post([&] { gate.wait(); ++ran; });
    for (int i = 0; i < 1000; ++i) pool.post([&] { ++ran; });
    std::thread stopper([&] { pool.stop(); });
    gate.count_down();
    stopper.join();
    CHECK(ran.load() == 1002);
    CHECK_FALSE(pool.post([&] { ++ran; }));
    CHECK_THROWS_AS(pool.submit([] { return 0; }).get(), pool_stopped);
    CHECK(ran.load() == 1002);
}

TEST_CASE("when stop races with submit, each task either runs exactly once or is refused") {
    for (int round = 0; round < 20; ++round) {
        auto pool = std::make_unique<thread_pool>(2);
        std::atomic<int> executed{0}, accepted{0}, refused{0};
        std::vector<std::thread> producers;
        std::latch start(4);
        for (int p = 0; p < 3; ++p)
            producers.emplace_back([&] {
                start.arrive_and_wait();
                for (int i = 0; i < 2000; ++i) {
                    if (pool->post([&] { ++executed; })) ++accepted;
                    else ++refused;
                }
            });
        start.arrive_and_wait();
        pool->stop();
        for (auto& t : producers) t.join();
        pool.reset();
        CHECK(executed.load() == accepted.load());
        CHECK(accepted.load() + refused.load() == 6000);
    }
}

TEST_CASE("idle workers sleep instead of spinning") {
    thread_pool pool(2);
    pool.submit([] {}).get();
    auto cpu = [] {
        rusage u{};
        ::getrusage(RUSAGE_SELF, &u);
        return std::chrono::seconds(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
               std::chrono::microseconds(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
    };
    auto before = cpu();
    std::this_thread::sleep_for(300ms);  // the idle period being measured, not synchronisation
    auto used = cpu() - before;
    // Two spinning workers would burn ~600 ms of CPU here.
    CHECK(used < 100ms);
}

TEST_CASE("a pool needs at least one worker") {
    CHECK_THROWS_AS(thread_pool(0), std::invalid_argument);
}
