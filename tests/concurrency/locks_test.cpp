#include <catch2/catch.hpp>

#include <dhtkit/concurrency/locks.hpp>

#include <mutex>
#include <shared_mutex>
#include <thread>
#include <vector>

using namespace dhtkit;

static_assert(lock_policy<std::mutex> && !shared_lock_policy<std::mutex>);
static_assert(shared_lock_policy<std::shared_mutex>);
static_assert(lock_policy<spinlock> && !shared_lock_policy<spinlock>);
static_assert(shared_lock_policy<shared_spinlock>);
static_assert(shared_lock_policy<null_lock>);

TEMPLATE_TEST_CASE("an exclusive lock admits one thread at a time", "", std::mutex, spinlock,
                   shared_spinlock) {
    TestType lock;
    long counter = 0;  // deliberately not atomic: the lock is what protects it
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&] {
            for (int i = 0; i < 20000; ++i) {
                std::lock_guard g(lock);
                ++counter;
            }
        });
    for (auto& t : threads) t.join();
    CHECK(counter == 80000);
}

TEST_CASE("shared_spinlock lets readers share and keeps them out while a writer holds it") {
    shared_spinlock lock;
    lock.lock_shared();
    lock.lock_shared();  // a second reader does not wait
    std::atomic<bool> writer_in{false};
    std::thread writer([&] {
        lock.lock();
        writer_in = true;
        lock.unlock();
    });
    CHECK_FALSE(writer_in.load());
    lock.unlock_shared();
    lock.unlock_shared();
    writer.join();
    CHECK(writer_in.load());

    // Readers and a writer that swaps a pair: a reader must never see the pair half-written.
    long a = 0, b = 0;
    std::atomic<bool> torn{false}, done{false};
    std::thread reader([&] {
        while (!done.load()) {
            read_guard g(lock);
            if (a != b) torn = true;
        }
    });
    for (int i = 0; i < 20000; ++i) {
        std::lock_guard g(lock);
        ++a;
        ++b;
    }
    done = true;
    reader.join();
    CHECK_FALSE(torn.load());
}
