#include <catch2/catch.hpp>

#include <dhtkit/store/locked_table.hpp>

#include <fmt/format.h>

#include <mutex>
#include <random>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

using namespace dhtkit;

namespace {

template <class Lock, std::size_t Shards = 16>
using text_table = locked_table<std::string, std::string, table_hash<std::string>, Lock, Shards>;

// What the peer composes: a table of strings, under every lock policy.
static_assert(string_table<text_table<shared_spinlock>>);
static_assert(string_table<text_table<std::shared_mutex>>);

// Every key lands on one shard and one probe sequence: the worst case for probing.
struct constant_hash {
    std::uint64_t operator()(std::string_view) const noexcept { return 7; }
};

template <class Table>
void check_against_model(Table& table, std::unordered_map<std::string, std::string>& model,
                         unsigned seed, int ops, int key_space) {
    std::mt19937 rng(seed);
    for (int i = 0; i < ops; ++i) {
        auto key = "k" + std::to_string(rng() % static_cast<unsigned>(key_space));
        switch (rng() % 4) {
            case 0:
            case 1: {
                auto value = std::string(rng() % 40, static_cast<char>('a' + rng() % 26));
                bool fresh = model.find(key) == model.end();
                REQUIRE(table.put(key, value) == fresh);
                model[key] = value;
                break;
            }
            case 2:
                REQUIRE(table.erase(key) == (model.erase(key) == 1));
                break;
            default: {
                auto got = table.try_get(key);
                auto it = model.find(key);
                REQUIRE(got.has_value() == (it != model.end()));
                if (got) REQUIRE(*got == it->second);
            }
        }
    }
    REQUIRE(table.size() == model.size());
    std::size_t seen = 0;
    table.for_each([&](std::string_view k, std::string_view v) {
        ++seen;
        auto it = model.find(std::string(k));
        REQUIRE(it != model.end());
        REQUIRE(it->second == v);
    });
    CHECK(seen == model.size());
}

}  // namespace

TEMPLATE_TEST_CASE("the table does what a map does, under every lock policy", "", std::mutex,
                   std::shared_mutex, spinlock, shared_spinlock, null_lock) {
    text_table<TestType> table;
    CHECK_FALSE(table.contains("a"));
    CHECK(table.put("a", "1"));
    CHECK_FALSE(table.put("a", "2"));
    CHECK(table.try_get("a") == std::optional<std::string>("2"));
    std::string out = "stale";
    CHECK(table.get("a", out));
    CHECK(out == "2");
    CHECK_FALSE(table.get("b", out));
    CHECK(out == "2");
    CHECK(table.size() == 1);
    CHECK(table.erase("a"));
    CHECK_FALSE(table.erase("a"));
    CHECK(table.size() == 0);
}

TEST_CASE("a random mix of puts, erases and gets matches std::unordered_map, through growth and tombstones") {
    std::unordered_map<std::string, std::string> model;
    SECTION("many shards") {
        text_table<spinlock, 64> table;
        check_against_model(table, model, 1, 200000, 5000);
    }
    SECTION("one shard, the seed's design") {
        text_table<std::mutex, 1> table;
        check_against_model(table, model, 2, 200000, 5000);
    }
    SECTION("every key colliding") {
        locked_table<std::string, std::string, constant_hash, std::mutex, 4> table;
        check_against_model(table, model, 3, 20000, 300);
    }
}

TEST_CASE("tables of other types work, and a weak hash (identity) still spreads") {
    locked_table<int, std::vector<int>> table;
    for (int i = 0; i < 10000; ++i) table.put(i * 1024, std::vector<int>{i, i + 1});
    CHECK(table.size() == 10000);
    for (int i = 0; i < 10000; i += 97) {
        auto v = table.try_get(i * 1024);
        REQUIRE(v);
        CHECK((*v)[1] == i + 1);
    }
    CHECK_FALSE(table.contains(1));
}

TEST_CASE("values that grow are reallocated, values that shrink are kept in place") {
    text_table<std::mutex> table;
    table.put("k", std::string(10, 'x'));
    table.put("k", std::string(3, 'y'));
    CHECK(table.try_get("k") == std::string(3, 'y'));
    table.put("k", std::string(10000, 'z'));
    CHECK(table.try_get("k") == std::string(10000, 'z'));
    table.put("k", "");
    CHECK(table.try_get("k") == std::string());
    CHECK(table.contains("k"));
}

TEST_CASE("update is an atomic read-modify-write") {
    locked_table<std::string, std::string> table;
    constexpr int threads = 4, rounds = 5000;
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
        pool.emplace_back([&] {
            for (int i = 0; i < rounds; ++i)
                table.update("counter", [](std::optional<std::string_view> now) {
                    return std::optional<std::string>(std::to_string(now ? std::stol(std::string(*now)) + 1 : 1));
                });
        });
    for (auto& t : pool) t.join();
    CHECK(table.try_get("counter") == std::to_string(threads * rounds));
    // Returning nullopt leaves the table as it was.
    CHECK_FALSE(table.update("counter", [](auto) { return std::optional<std::string>{}; }));
    CHECK_FALSE(table.update("absent", [](auto) { return std::optional<std::string>{}; }));
    CHECK_FALSE(table.contains("absent"));
}

TEMPLATE_TEST_CASE("many threads hammering the table leave exactly the state of the model", "",
                   std::mutex, shared_spinlock, spinlock) {
    constexpr int writers = 4;
    text_table<TestType, 8> table;
    std::vector<std::unordered_map<std::string, std::string>> models(writers);
    std::atomic<bool> torn{false}, done{false};
    std::vector<std::thread> threads;
    for (int t = 0; t < writers; ++t)
        threads.emplace_back([&, t] {
            // Each writer owns the keys ending in its number; the values spell out the key, so a
            // reader can tell a torn value from a whole one.
            std::mt19937 rng(static_cast<unsigned>(t) + 10);
            auto& model = models[static_cast<std::size_t>(t)];
            for (int i = 0; i < 30000; ++i) {
                auto key = std::to_string(rng() % 2000) + "/" + std::to_string(t);
                if (rng() % 3 == 0) {
                    table.erase(key);
                    model.erase(key);
                } else {
                    std::string value;
                    for (unsigned r = rng() % 8 + 1; r > 0; --r) value += key + ";";
                    table.put(key, value);
                    model[key] = value;
                }
            }
        });
    for (int r = 0; r < 2; ++r)
        threads.emplace_back([&, r] {
            std::mt19937 rng(static_cast<unsigned>(r) + 99);
            std::string out;
            while (!done.load(std::memory_order_relaxed)) {
                auto key = std::to_string(rng() % 2000) + "/" + std::to_string(rng() % writers);
                if (table.get(key, out)) {
                    auto unit = key + ";";
                    if (out.size() % unit.size() != 0) torn = true;
                    for (std::size_t at = 0; at < out.size(); at += unit.size())
                        if (out.compare(at, unit.size(), unit) != 0) torn = true;
                }
            }
        });
    for (int t = 0; t < writers; ++t) threads[static_cast<std::size_t>(t)].join();
    done = true;
    for (std::size_t t = writers; t < threads.size(); ++t) threads[t].join();

    CHECK_FALSE(torn.load());
    std::size_t expected = 0;
    bool all_match = true;
    for (auto& model : models) {
        expected += model.size();
        for (auto& [k, v] : model)
            if (table.try_get(k) != v) all_match = false;
    }
    CHECK(all_match);
    CHECK(table.size() == expected);
    CHECK(table.snapshot().size() == expected);
}

TEST_CASE("for_each can hand over between shards, with no lock held") {
    locked_table<std::string, std::string> t;
    for (int i = 0; i < 5000; ++i) t.put(fmt::format("k{}", i), "v");
    std::size_t seen = 0, betweens = 0, seen_at_last_between = 0;
    t.for_each([&](std::string_view, std::string_view) { ++seen; },
               [&] {
                   ++betweens;
                   seen_at_last_between = seen;
                   // No lock is held here: writing into the table must not deadlock.
                   t.put("written-between", "x");
               });
    CHECK(betweens == 256);
    CHECK(seen_at_last_between == seen);
    CHECK(seen >= 5000);
}
