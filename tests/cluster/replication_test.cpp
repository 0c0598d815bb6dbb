// Static backup with real dhtkit-peer processes: acknowledged writes survive kill -9 of their
// home peer (and, with R = 2, of a second peer), restarted peers catch up before they serve,
// and files stay obtainable when their original holder dies.

#include <catch2/catch.hpp>

#include "local_cluster.hpp"
#include "raw_session.hpp"
#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <thread>

using namespace dhtkit;
using namespace dhtkit::protocol;
using namespace std::chrono_literals;

namespace {

using test::eventually;

// A value a peer holds itself, asked of that peer alone (no failover), from its own table
// whatever its read leases say (a lease that lapses on a slow machine only delays its answers).
std::optional<std::string> held_by(client& c, std::size_t peer, std::string_view key) {
    auto e = test::own_copy(c, peer, key);
    if (!e || !e->present || e->deleted) return std::nullopt;
    return e->value;
}

std::uint64_t peer_stat(client& c, std::size_t peer, std::string_view name) {
    auto v = test::stat_value(c, peer, name);
    return v.empty() ? ~std::uint64_t{0} : std::stoull(v);
}

// Writes keys k0..k(n-1) round and round with increasing values, remembering per key the last
// value a peer acknowledged and the last value tried (a write that got no answer may or may not
// have been applied).
class writer {
public:
    writer(const test::local_cluster& cluster, int keys) : client_(cluster.client(800ms)), keys_(keys) {
        thread_ = std::thread([this] { run(); });
    }
    ~writer() { stop(); }

    void stop() {
        stopping_ = true;
        if (thread_.joinable()) thread_.join();
    }
    [[nodiscard]] std::uint64_t acknowledged() const { return acked_.load(); }
    [[nodiscard]] std::uint64_t failed() const { return failed_.load(); }

    // Every key reads as its last acknowledged value or a later tried one.
    void check(client& reader) const {
        for (int k = 0; k < keys_; ++k) {
            auto key = fmt::format("k{}", k);
            auto [acked, tried] = state_.at(static_cast<std::size_t>(k));
            if (acked == 0) continue;
            // A holder may answer `unavailable` for a while (its lease from a killed peer lapsed
            // and it waits to catch up, up to 5 s alone): allowed, and asked again. A wrong value is not.
            reply r;
            eventually([&] { return (r = reader.get(key)).code != status::unavailable; }, 15s);
            INFO(key << " acknowledged " << acked << " tried " << tried << ": " << r.error);
            REQUIRE(r.ok());
            auto v = std::stoull(r.value);
            CHECK(v >= acked);
            CHECK(v <= tried);
        }
    }

private:
    void run() {
        state_.assign(static_cast<std::size_t>(keys_), {0, 0});
        for (std::uint64_t round = 1; !stopping_; ++round)
            for (int k = 0; k < keys_ && !stopping_; ++k) {
                auto& [acked, tried] = state_[static_cast<std::size_t>(k)];
                tried = round;
                if (client_.put(fmt::format("k{}", k), std::to_string(round)).ok()) {
                    acked = round;
                    ++acked_;
                } else {
                    ++failed_;
                }
            }
    }

    client client_;
    int keys_;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> state_;  // the writer thread's until stop()
    std::atomic<bool> stopping_{false};
    std::atomic<std::uint64_t> acked_{0}, failed_{0};
    std::thread thread_;
};

}  // namespace

TEST_CASE("a write is acknowledged only after every live backup applied it, under both dispatch models") {
    test::local_cluster cluster({.dispatch = GENERATE(as<std::string>{}, "pool", "loop")});
    cluster.start_all();
    auto c = cluster.client(800ms);
    for (int i = 0; i < 200; ++i) {
        auto key = fmt::format("key-{}", i);
        REQUIRE(c.put(key, fmt::format("v{}", i)).ok());
        // Straight after the acknowledgement, with no waiting: every holder has it.
        for (auto p : c.holders(key)) CHECK(held_by(c, p, key) == fmt::format("v{}", i));
    }
    REQUIRE(c.del("key-7").ok());
    for (auto p : c.holders("key-7")) CHECK_FALSE(held_by(c, p, "key-7"));
}

TEST_CASE("pipelined writes on one connection are each acknowledged after their copies") {
    test::local_cluster cluster;
    cluster.start_all();
    auto c = cluster.client();
    auto home = c.holders("x")[0];
    test::raw_session s{test::raw_connect(cluster, static_cast<int>(home))};
    std::string batch;
    for (std::uint64_t i = 1; i <= 500; ++i) batch += test::frame(opcode::put, i, fmt::format("p{}", i), "v");
    s.send(batch);
    auto got = s.read(500);
    REQUIRE_FALSE(s.closed);
    REQUIRE(got.size() == 500);
    for (std::uint64_t i = 1; i <= 500; ++i) {
        REQUIRE(got[i - 1].first.request_id == i);  // in order
        REQUIRE(got[i - 1].first.code == status::ok);
    }
    for (std::uint64_t i = 1; i <= 500; i += 37)
        for (auto p : c.holders(fmt::format("p{}", i))) CHECK(held_by(c, p, fmt::format("p{}", i)) == "v");
}

TEST_CASE("kill -9 of a key's home peer mid-load loses no acknowledged write, and it restarts and catches up") {
    const int peers = GENERATE(3, 5);
    test::local_cluster cluster({.peers = peers});
    cluster.start_all();
    auto reader = cluster.client(800ms);
    const auto victim = static_cast<int>(reader.holders("k0")[0]);

    writer w(cluster, 64);
    REQUIRE(reader.put("doomed", "x").ok());
    REQUIRE(eventually([&] { return w.acknowledged() > 300; }));
    cluster.kill(victim);
    auto before = w.acknowledged();
    REQUIRE(eventually([&] { return w.acknowledged() > before + 300; }));
    w.stop();
    w.check(reader);

    // Deleted while the home is down: the tombstone must reach it when it comes back.
    REQUIRE(reader.del("doomed").ok());
    REQUIRE(reader.put("written-while-down", "yes").ok());

    cluster.start(victim);
    auto fresh = cluster.client(800ms);
    // Asked directly, with no failover to hide a stale copy: what the restarted peer serves is
    // what the others had.
    for (int k = 0; k < 64; ++k) {
        auto key = fmt::format("k{}", k);
        auto holders = fresh.holders(key);
        if (std::find(holders.begin(), holders.end(), static_cast<std::size_t>(victim)) == holders.end()) continue;
        auto other = holders[0] == static_cast<std::size_t>(victim) ? holders[1] : holders[0];
        CHECK(held_by(fresh, static_cast<std::size_t>(victim), key) == held_by(fresh, other, key));
    }
    auto holders = fresh.holders("written-while-down");
    if (std::find(holders.begin(), holders.end(), static_cast<std::size_t>(victim)) != holders.end())
        CHECK(held_by(fresh, static_cast<std::size_t>(victim), "written-while-down") == "yes");
    for (auto p : fresh.holders("doomed")) CHECK_FALSE(held_by(fresh, p, "doomed"));
    CHECK(peer_stat(fresh, static_cast<std::size_t>(victim), "caught_up_from") >= 1);
    w.check(fresh);
}

TEST_CASE("with two backups, kill -9 of two peers loses no acknowledged write") {
    const int peers = GENERATE(3, 5);
    test::local_cluster cluster({.peers = peers});
    cluster.start_all();
    auto reader = cluster.client(800ms);
    const auto first = static_cast<int>(reader.holders("k0")[0]);
    const auto second = static_cast<int>(reader.holders("k0")[1]);

    writer w(cluster, 64);
    REQUIRE(eventually([&] { return w.acknowledged() > 300; }));
    cluster.kill(first);
    auto before = w.acknowledged();
    REQUIRE(eventually([&] { return w.acknowledged() > before + 200; }));
    cluster.kill(second);
    before = w.acknowledged();
    REQUIRE(eventually([&] { return w.acknowledged() > before + 200; }));
    w.stop();
    w.check(reader);

    cluster.start(first);
    cluster.start(second);
    auto fresh = cluster.client(800ms);
    w.check(fresh);
    for (auto victim : {first, second})
        for (int k = 0; k < 64; ++k) {
            auto key = fmt::format("k{}", k);
            auto holders = fresh.holders(key);
            if (std::find(holders.begin(), holders.end(), static_cast<std::size_t>(victim)) == holders.end()) continue;
            CHECK(held_by(fresh, static_cast<std::size_t>(victim), key) == fresh.get(key).value);
        }
}

TEST_CASE("a backup that stalls misses writes, then gets them once it answers again") {
    test::local_cluster cluster;
    cluster.start_all();
    auto c = cluster.client(2000ms);
    auto holders = c.holders("stall");
    const auto backup = static_cast<int>(holders[1]);
    cluster.kill(backup, SIGSTOP);
    REQUIRE(cluster.wait_stopped(backup));
    // The first write waits out the ack timeout; then the backup is marked down and skipped.
    REQUIRE(c.put("stall", "1").ok());
    REQUIRE(c.put("stall", "2").ok());
    REQUIRE(c.put("stall-too", "x").ok());
    CHECK(peer_stat(c, holders[0], "copies_missed") >= 1);
    cluster.kill(backup, SIGCONT);
    REQUIRE(eventually([&] { return held_by(c, holders[1], "stall") == "2"; }));
    auto other = c.holders("stall-too");
    for (auto p : other) CHECK(eventually([&] { return held_by(c, p, "stall-too") == "x"; }));
}

TEST_CASE("a file stays obtainable after its original holder dies") {
    test::local_cluster cluster;
    {
        std::string data(300000, '\0');
        std::mt19937_64 rng(9);
        for (auto& ch : data) ch = static_cast<char>(rng());
        std::ofstream(cluster.shared(1) / "kept.bin", std::ios::binary) << data;
    }
    cluster.start_all();
    auto c = cluster.client(800ms);
    // The backups (peers 2 and 0) copy it and register themselves as holders.
    REQUIRE(eventually([&] { return c.search("kept.bin").second.size() == 3; }));
    CHECK(std::filesystem::file_size(cluster.shared(2) / "kept.bin") == 300000);
    cluster.kill(1);
    auto dest = cluster.dir() / "kept-copy.bin";
    auto got = c.obtain("kept.bin", dest);
    REQUIRE(got.ok());
    CHECK(got.from_peer != 1);
    CHECK(std::filesystem::file_size(dest) == 300000);
}

TEST_CASE("malformed replication requests get an error and change nothing") {
    test::local_cluster cluster;
    cluster.start_all();
    auto c = cluster.client(800ms);
    REQUIRE(c.put("kept", "yes").ok());
    test::raw_session s{test::raw_connect(cluster, 0)};
    std::string from;
    append(from, holder{1, "127.0.0.1", cluster.port(1), 10, 1});
    s.send(test::frame(opcode::replicate, 1, "kept", "garbage") + test::frame(opcode::sync, 2, {}, "abc") +
           test::frame(opcode::sync, 3, {}, encode_u64(99)) +
           test::frame(opcode::replicate_file, 4, "../escape", from) +
           test::frame(opcode::replicate_file, 5, "fine.txt", "not a holder") + test::frame(opcode::hello, 6, {}, "abc") +
           test::frame(opcode::ping, 7, {}));
    auto got = s.read(7);
    REQUIRE_FALSE(s.closed);
    REQUIRE(got.size() == 7);
    for (std::size_t i = 0; i < 6; ++i) CHECK(got[i].first.code == status::bad_request);
    CHECK(got[6].first.code == status::ok);  // the connection is still in step
    for (auto p : c.holders("kept")) CHECK(held_by(c, p, "kept") == "yes");
    CHECK_FALSE(std::filesystem::exists(cluster.dir() / "peer0" / "escape"));
}

TEST_CASE("a restarted peer catches up on more records than one flush of a sync carries") {
    test::local_cluster cluster;
    cluster.start_all();
    auto c = cluster.client(800ms);
    const std::string value(600, 'v');
    constexpr int keys = 3000;  // 3000 records of ~600 bytes: the sync answer is streamed in pieces
    for (int i = 0; i < keys; ++i) REQUIRE(c.put(fmt::format("bulk-{}", i), value + std::to_string(i)).ok());
    cluster.kill(1);
    cluster.start(1);
    CHECK(peer_stat(c, 1, "caught_up_records") >= keys);  // every key is on all three peers
    for (int i = 0; i < keys; i += 97)
        CHECK(held_by(c, 1, fmt::format("bulk-{}", i)) == value + std::to_string(i));
}

TEST_CASE("a write delivered late to a paused home does not overtake a newer acknowledged write") {
    test::local_cluster cluster;
    cluster.start_all();
    // Gives up on the paused home after 800 ms, as a default client does, and then leaves it be,
    // so that v2 never reaches the home through the client: only v1 waits in its socket.
    client_options o;
    o.request_timeout = 800ms;
    o.down_for = 30s;
    client writer(cluster.config(), o);
    auto reader = cluster.client(2000ms);
    const auto holders = reader.holders("late");
    const auto home = static_cast<int>(holders[0]);
    REQUIRE(writer.put("late", "v0").ok());
    const auto puts_before = peer_stat(reader, holders[0], "op_put");

    cluster.kill(home, SIGSTOP);
    REQUIRE(cluster.wait_stopped(home));
    // v1 goes to the paused home first: it waits in the home's socket while a backup takes it.
    REQUIRE(writer.put("late", "v1").ok());
    REQUIRE(writer.put("late", "v2").ok());  // issued after v1 was acknowledged
    cluster.kill(home, SIGCONT);

    // The home now reads the v1 request that waited in its socket, and takes it, late...
    REQUIRE(eventually([&] { return peer_stat(reader, holders[0], "op_put") >= puts_before + 1; }));
    // ...but v1 carries the stamp it was issued with, so every holder ends at v2, the home too.
    for (auto p : holders) CHECK(eventually([&] { return held_by(reader, p, "late") == "v2"; }));
    for (auto p : holders) CHECK(held_by(reader, p, "late") == "v2");
}

TEST_CASE("a holder paused past its read lease does not answer from its stale copy when it resumes") {
    const std::string rule = GENERATE(std::string("available"), std::string("majority"));
    test::local_cluster cluster({.consistency = rule});
    cluster.start_all();
    auto c = cluster.client(2000ms);
    const auto holders = c.holders("lease");
    const auto backup = static_cast<int>(holders[1]);
    REQUIRE(c.put("lease", "old").ok());
    REQUIRE(held_by(c, holders[1], "lease") == "old");

    cluster.kill(backup, SIGSTOP);
    REQUIRE(cluster.wait_stopped(backup));
    // Acknowledged without the backup once its copy timed out (and its lease ran out).
    REQUIRE(c.put("lease", "new").ok());
    cluster.kill(backup, SIGCONT);
    // Asked directly, the moment it runs again: it refuses, or has caught up — never "old".
    auto direct = cluster.client(2000ms);
    bool answered_new = false;
    const auto until = std::chrono::steady_clock::now() + 10s;
    while (!answered_new && std::chrono::steady_clock::now() < until) {
        auto r = direct.call(holders[1], opcode::get, "lease");
        INFO(r.value << " " << r.error);
        REQUIRE((r.code == status::unavailable || r.ok()));
        if (r.ok()) {
            CHECK(r.value == "new");
            answered_new = true;
        }
    }
    CHECK(answered_new);
}

TEST_CASE("under majority, a write that reaches only a minority of a slot's holders is refused") {
    test::local_cluster cluster({.consistency = "majority"});
    cluster.start_all();
    auto c = cluster.client(2000ms);
    const auto holders = c.holders("quorum");
    REQUIRE(c.put("quorum", "1").ok());
    // Both backups paused: the home alone is no majority.
    for (auto p : {holders[1], holders[2]}) {
        cluster.kill(static_cast<int>(p), SIGSTOP);
        REQUIRE(cluster.wait_stopped(static_cast<int>(p)));
    }
    auto r = c.call(holders[0], opcode::put, "quorum", "2");
    CHECK(r.code == status::unavailable);
    // Its read cannot be vouched for either.
    auto g = c.call(holders[0], opcode::get, "quorum");
    CHECK(g.code == status::unavailable);
    // One backup back: a majority again, writes and reads go on (the read from a quorum of copies).
    cluster.kill(static_cast<int>(holders[1]), SIGCONT);
    CHECK(test::eventually([&] { return c.call(holders[0], opcode::put, "quorum", "3").ok(); }, 10s));
    reply after;
    CHECK(test::eventually([&] { return (after = c.call(holders[0], opcode::get, "quorum")).ok(); }, 10s));
    CHECK(after.value == "3");
    cluster.kill(static_cast<int>(holders[2]), SIGCONT);
}

// "available" acknowledges a write that only the holder that took it applied, when the others are
// down: one more crash of that holder before they catch up would lose it. min_copies is the
// floor (Redis's min-replicas-to-write): with 2, such a write is refused, and stats count the
// writes that were acknowledged on one copy where the floor allows it.
TEST_CASE("min_copies: a write is acknowledged only once that many holders applied it") {
    const int floor = GENERATE(1, 2);
    INFO("min_copies " << floor);
    test::local_cluster cluster({.min_copies = floor});
    cluster.start_all();
    auto c = cluster.client(2000ms);
    const auto holders = c.holders("floor");
    REQUIRE(c.put("floor", "1").ok());
    cluster.kill(static_cast<int>(holders[1]));
    CHECK(test::eventually([&] { return c.call(holders[0], opcode::put, "floor", "2").ok(); }, 10s));  // two copies
    CHECK(test::stat_value(c, holders[0], "single_copy_writes") == "0");
    cluster.kill(static_cast<int>(holders[2]));
    // The home alone: under the floor of 2 it refuses (and the value stays readable); with 1 it
    // takes the write once it has excused the dead holders, and counts it.
    reply r;
    if (floor == 2) {
        for (int i = 0; i < 60; ++i) {  // 3 s: past the lease term, the excuses and their catch-up
            r = c.call(holders[0], opcode::put, "floor", "3");
            REQUIRE_FALSE(r.ok());
            CHECK(r.code == status::unavailable);
            std::this_thread::sleep_for(50ms);
        }
        CHECK_THAT(r.error + r.value, Catch::Contains("a write needs 2"));
        // Still readable. A refused write's outcome is unknown (the first try, while the dead
        // holders' leases ran, was applied here before its copies failed), so either value.
        reply g;
        CHECK(test::eventually([&] { return (g = c.call(holders[0], opcode::get, "floor")).ok(); }, 10s));
        CHECK((g.value == "2" || g.value == "3"));
    } else {
        CHECK(test::eventually([&] { return c.call(holders[0], opcode::put, "floor", "3").ok(); }, 10s));
        CHECK(test::stat_count(c, holders[0], "single_copy_writes") >= 1);
    }
}
