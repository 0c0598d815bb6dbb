// Durability with [storage] mode = "log", on real processes: writers record what was
// acknowledged; peers are killed with SIGKILL in the middle of it (one, or all at once) and
// started again; every acknowledged write must be there, read from each holder's own copy.

#include <catch2/catch.hpp>

#include "local_cluster.hpp"

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

using namespace std::chrono_literals;

namespace {

// Writers that put their own keys in rounds and remember, per key, the last value acknowledged
// and the one in flight (which may or may not have landed when a peer died).
class recorded_writers {
public:
    recorded_writers(const test::local_cluster& cluster, int writers) {
        for (int w = 0; w < writers; ++w)
            threads_.emplace_back([this, &cluster, w] {
                auto c = cluster.client(1000ms);
                for (std::uint64_t round = 1; !stop_.load(); ++round) {
                    for (int k = 0; k < 20 && !stop_.load(); ++k) {
                        const auto key = fmt::format("w{}-k{}", w, k);
                        const auto value = fmt::format("{}-{}", key, round);
                        {
                            std::lock_guard lock(mutex_);
                            sent_[key] = value;
                        }
                        auto r = c.put(key, value);
                        std::lock_guard lock(mutex_);
                        if (r.ok()) {
                            acked_[key] = value;
                            ++acked_count_;
                        } else if (errors_.size() < 5) {
                            errors_.push_back(r.error);
                        }
                    }
                }
            });
    }
    ~recorded_writers() { stop(); }

    void stop() {
        stop_ = true;
        for (auto& t : threads_)
            if (t.joinable()) t.join();
    }
    std::size_t acked() {
        std::lock_guard lock(mutex_);
        return acked_count_;
    }
    // key -> {last acknowledged, last sent}
    std::map<std::string, std::pair<std::string, std::string>> outcome() {
        std::lock_guard lock(mutex_);
        std::map<std::string, std::pair<std::string, std::string>> out;
        for (const auto& [k, v] : acked_) out[k] = {v, sent_.at(k)};
        return out;
    }

private:
    std::atomic<bool> stop_{false};
    std::mutex mutex_;
    std::map<std::string, std::string> acked_, sent_;  // guarded by mutex_
    std::size_t acked_count_ = 0;                       // guarded by mutex_
public:
    std::vector<std::string> errors_;                   // the first few refusals, for the test's messages
    std::vector<std::thread> threads_;
};

// Every holder's own copy of every key has its last acknowledged value, or the one sent after it.
void check_every_holder(const test::local_cluster& cluster, recorded_writers& w) {
    auto c = cluster.client(2000ms);
    const auto outcome = w.outcome();
    for (const auto& e : w.errors_) WARN("a refused write: " << e);
    REQUIRE(!outcome.empty());
    for (const auto& [key, values] : outcome) {
        for (auto holder : c.holders(key)) {
            auto own = test::own_copy(c, holder, key);
            INFO("key " << key << " on peer " << holder);
            REQUIRE(own);
            REQUIRE(own->present);
            CHECK_FALSE(own->deleted);
            // Not older than the last acknowledged value, and nothing that was never sent. (A write
            // that was not acknowledged may have landed on some holders.)
            auto round = [](const std::string& v) { return std::stoull(v.substr(v.rfind('-') + 1)); };
            INFO("holds " << own->value << ", acknowledged " << values.first << ", last sent " << values.second);
            CHECK(own->value.rfind(key + "-", 0) == 0);
            CHECK(round(own->value) >= round(values.first));
            CHECK(round(own->value) <= round(values.second));
        }
    }
}

}  // namespace

TEST_CASE("with a log and fsync always: a lone peer killed mid-load has every acknowledged write after restart") {
    test::local_cluster cluster({.peers = 1, .backups = 0, .storage = "log", .fsync = "always"});
    cluster.start_all();
    recorded_writers w(cluster, 3);
    REQUIRE(test::eventually([&] { return w.acked() >= 300; }, 30s));
    cluster.kill(0);  // SIGKILL, in the middle of writes
    w.stop();
    cluster.start(0);  // no replica to catch up from: only its log
    check_every_holder(cluster, w);
    auto c = cluster.client();
    CHECK(test::stat_count(c, 0, "replayed_records") >= w.outcome().size());
}

TEST_CASE("with a log: a whole cluster killed at once and started again loses nothing acknowledged") {
    const auto rule = GENERATE(std::string("always"), std::string("everysec"));
    INFO("fsync " << rule);
    test::local_cluster cluster({.storage = "log", .fsync = rule});
    cluster.start_all();
    recorded_writers w(cluster, 3);
    REQUIRE(test::eventually([&] { return w.acked() >= 300; }, 30s));
    for (int i = 0; i < 3; ++i) ::kill(cluster.pid(i), SIGKILL);  // every peer at once; everysec survives it (the OS has the bytes)
    for (int i = 0; i < 3; ++i) cluster.kill(i);                   // reaped
    w.stop();
    for (int i = 0; i < 3; ++i) cluster.start(i);
    check_every_holder(cluster, w);
}

TEST_CASE("a peer restarted with its log pulls only the slots that changed while it was down") {
    test::local_cluster cluster({.storage = "log"});
    cluster.start_all();
    auto c = cluster.client(2000ms);
    for (int i = 0; i < 2000; ++i) REQUIRE(c.put(fmt::format("before-{}", i), "v").ok());
    cluster.kill(1);
    // A few writes while it is down, on the slots of a few keys.
    std::vector<std::string> during;
    for (int i = 0; i < 10; ++i) {
        during.push_back(fmt::format("during-{}", i));
        REQUIRE(c.put(during.back(), "new").ok());
    }
    cluster.start(1);
    const auto pulled = test::stat_count(c, 1, "caught_up_records");
    INFO("records pulled: " << pulled);
    CHECK(pulled > 0);
    CHECK(pulled < 400);  // the changed slots' records (twice: both other holders), not the 2000 it kept
    for (const auto& key : during) {
        auto own = test::own_copy(c, 1, key);
        REQUIRE(own);
        CHECK(own->value == "new");
    }
    CHECK(test::own_copy(c, 1, "before-1234")->value == "v");
}

TEST_CASE("without a log a restarted peer pulls everything again") {
    test::local_cluster cluster;
    cluster.start_all();
    auto c = cluster.client(2000ms);
    for (int i = 0; i < 500; ++i) REQUIRE(c.put(fmt::format("k-{}", i), "v").ok());
    cluster.kill(1);
    cluster.start(1);
    CHECK(test::stat_count(c, 1, "caught_up_records") >= 500);
}

TEST_CASE("a peer whose log is damaged before its tail does not start, says where, and starts with --repair") {
    test::local_cluster cluster({.peers = 1, .backups = 0, .storage = "log", .fsync = "always"});
    cluster.start_all();
    auto c = cluster.client(2000ms);
    for (int i = 0; i < 50; ++i) REQUIRE(c.put(fmt::format("k{}", i), std::string(100, 'v')).ok());
    cluster.stop(0);
    const auto log = cluster.dir() / "peer0/data/log.1";
    REQUIRE(std::filesystem::exists(log));
    {
        std::fstream f(log, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(static_cast<std::streamoff>(std::filesystem::file_size(log) / 2));
        f.put('\x7f');
    }
    try {
        cluster.start(0);
        FAIL("a peer started on a damaged log, with " << test::stat_value(c, 0, "keys") << " keys");
    } catch (const std::exception& e) {
        CHECK_THAT(e.what(), Catch::Contains("log.1") && Catch::Contains("damaged at byte") && Catch::Contains("--repair"));
    }
    cluster.start(0, "--repair");
    const auto kept = test::stat_count(c, 0, "keys");
    CHECK(kept > 0);
    CHECK(kept < 50);
    bool aside = false;
    for (const auto& f : std::filesystem::directory_iterator(cluster.dir() / "peer0/data"))
        aside = aside || f.path().filename().string().starts_with("log.1.corrupt-at-");
    CHECK(aside);
}

// A peer that starts while every other holder of its slots is down serves what it has (nobody up
// knows more), but it says so, and once they serve again it compares its slots with theirs and
// pulls what it missed: holders converge, even under the static policy.
TEST_CASE("a peer that caught up from none of its co-holders catches up again once they serve") {
    test::local_cluster cluster({.storage = "log", .fsync = "always"});
    cluster.start_all();
    auto c = cluster.client(2000ms);
    REQUIRE(c.put("k", "old").ok());
    cluster.kill(2);
    REQUIRE(c.put("k", "new").ok());  // on peers 0 and 1 (and their logs), not on 2
    cluster.kill(0);
    cluster.kill(1);
    cluster.start(2);  // alone: nobody to catch up from
    CHECK(test::own_copy(c, 2, "k")->value == "old");
    CHECK(test::stat_count(c, 2, "slots_unconfirmed") > 0);
    cluster.start(0);
    cluster.start(1);
    CHECK(test::eventually([&] {
        auto own = test::own_copy(c, 2, "k");
        return own && own->value == "new" && test::stat_value(c, 2, "slots_unconfirmed") == "0";
    }, 30s));
    CHECK(test::stat_count(c, 2, "anti_entropy_passes") >= 1);
}

// A peer with a log notes when the other holders last confirmed its data (DATA/confirmed_at). One
// that was away longer than the tombstone purge period may hold values whose deletes the others
// have forgotten: it does not start, and says why and the way out. Moved aside, it starts empty
// and catches up.
TEST_CASE("a peer whose data was confirmed longer ago than the purge period does not start, and says why") {
    test::local_cluster cluster({.storage = "log", .fsync = "always"});
    cluster.start_all();
    auto c = cluster.client(2000ms);
    REQUIRE(c.put("k", "v").ok());
    const auto data = cluster.dir() / "peer2/data";
    REQUIRE(test::eventually([&] { return std::filesystem::exists(data / "confirmed_at"); }, 15s));
    cluster.stop(2);
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch()).count();
    std::ofstream(data / "confirmed_at", std::ios::trunc) << now - 2 * 86400 << "\n";  // two days: past the default day
    try {
        cluster.start(2);
        FAIL("a peer started on data confirmed two days ago");
    } catch (const std::exception& e) {
        CHECK_THAT(e.what(), Catch::Contains("tombstone_purge_s") && Catch::Contains("Move") &&
                                 Catch::Contains(data.string()));
    }
    std::filesystem::rename(data, cluster.dir() / "peer2/data.old");
    cluster.start(2);
    auto own = test::own_copy(c, 2, "k");
    REQUIRE(own);
    CHECK(own->value == "v");
}

TEST_CASE("a delete that a holder missed is not purged before that holder has it, so its old value does not come back") {
    // Peer 2 is cut off through a delete, and the delete's coordinator (the key's home, peer 0)
    // is killed with the copy it owed peer 2: peer 2 keeps the old value past the purge period.
    if (!test::test_network::available()) {
        WARN("not root: no network namespaces, so no partition in this run");
        return;
    }
    test::local_cluster cluster({.tombstone_purge_s = 2, .own_network = true, .membership = "anti_entropy_s = 1"});
    cluster.start_all();
    auto c = cluster.client(2000ms);
    std::string key;
    for (int i = 0; key.empty() || c.home_of(key) != 0; ++i) key = fmt::format("k{}", i);
    REQUIRE(c.put(key, "old").ok());
    REQUIRE(test::eventually([&] { auto e = test::own_copy(c, 2, key); return e && e->value == "old"; }, 10s));
    cluster.partition(2);
    REQUIRE(c.del(key).ok());
    cluster.kill(0);
    std::this_thread::sleep_for(3500ms);  // the fault's length: the delete is past the period now
    cluster.heal(2);
    cluster.start(0);
    auto gone_everywhere = [&] {
        for (std::size_t p = 0; p < 3; ++p) {
            auto e = test::own_copy(c, p, key);
            if (!e || (e->present && !e->deleted)) return false;
        }
        return true;
    };
    // Anti-entropy hands peer 2 the delete; only then is it purged, on every holder.
    CHECK(test::eventually([&] {
        return gone_everywhere() && test::stat_value(c, 1, "tombstones_purged") != "0" &&
               test::stat_value(c, 2, "tombstones_purged") != "0";
    }, 30s));
    for (std::size_t p = 0; p < 3; ++p) {
        auto e = test::own_copy(c, p, key);
        REQUIRE(e);
        INFO("peer " << p << ": " << (e->present ? (e->deleted ? "a tombstone" : e->value) : "nothing") << ", purged "
                      << test::stat_value(c, p, "tombstones_purged") << ", anti-entropy passes "
                      << test::stat_value(c, p, "anti_entropy_passes"));
        CHECK_FALSE(e->present);
    }
}
