#include <catch2/catch.hpp>

#include <dhtkit/concurrency/task.hpp>

#include <array>
#include <memory>

using dhtkit::task;

TEST_CASE("a task holds move-only callables, small ones inline and large ones on the heap") {
    int hits = 0;
    auto owned = std::make_unique<int>(5);
    task small([&hits, p = std::move(owned)] { hits += *p; });
    std::array<char, 200> big{};
    big[0] = 3;
    task large([&hits, big] { hits += big[0]; });

    task moved = std::move(small);
    CHECK_FALSE(static_cast<bool>(small));
    moved();
    large();
    CHECK(hits == 8);

    task target;
    target = std::move(large);
    target();
    CHECK(hits == 11);
}

TEST_CASE("a task destroys its callable exactly once") {
    auto counter = std::make_shared<int>(0);
    {
        task a([counter] {});
        CHECK(counter.use_count() == 2);
        task b(std::move(a));
        task c;
        c = std::move(b);
        CHECK(counter.use_count() == 2);
    }
    CHECK(counter.use_count() == 1);
}
