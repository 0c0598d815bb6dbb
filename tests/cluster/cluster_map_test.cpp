// The cluster map and the static replication policies, without any process.
#include <catch2/catch.hpp>

#include <dhtkit/cluster/cluster_map.hpp>
#include <dhtkit/cluster/replication.hpp>
#include <dhtkit/peer/client.hpp>

#include <atomic>
#include <set>
#include <thread>
#include <vector>

using namespace dhtkit;

namespace {
std::vector<node> nodes_with_ids(std::initializer_list<node_id> ids) {
    std::vector<node> out;
    std::uint16_t port = 7400;
    for (auto id : ids) out.push_back({id, "127.0.0.1", port++, node_state::member});
    return out;
}
std::vector<node_id> holders(const cluster_map& m, slot_t s) {
    auto h = m.holders(s);
    return {h.begin(), h.end()};
}
}  // namespace

TEST_CASE("static_backup splits the slots into equal ranges in configured order, backups the R nodes after") {
    // Node ids are not positions: 30, 10, 20 in that order.
    auto m = make_cluster_map(static_backup(2), 1, nodes_with_ids({30, 10, 20}));
    CHECK(holders(m, 0) == std::vector<node_id>{30, 10, 20});
    CHECK(holders(m, 5460) == std::vector<node_id>{30, 10, 20});
    CHECK(holders(m, 5461) == std::vector<node_id>{10, 20, 30});
    CHECK(holders(m, 10922) == std::vector<node_id>{10, 20, 30});
    CHECK(holders(m, 10923) == std::vector<node_id>{20, 30, 10});
    CHECK(holders(m, 16383) == std::vector<node_id>{20, 30, 10});
    std::vector<slot_range> ranges;
    m.slots().for_each_range([&](slot_range r, std::span<const node_id>) { ranges.push_back(r); });
    CHECK(ranges == std::vector<slot_range>{{0, 5460}, {5461, 10922}, {10923, 16383}});

    auto one = make_cluster_map(static_backup(1), 1, nodes_with_ids({1, 2, 3, 4, 5}));
    CHECK(holders(one, 0) == std::vector<node_id>{1, 2});
    CHECK(holders(one, 16383) == std::vector<node_id>{5, 1});
    // Node 1 holds its own range and, as backup, node 5's: two runs, not one.
    CHECK(one.slots().ranges_held_by(1) == std::vector<slot_range>{{0, 3276}, {13107, 16383}});
}

TEST_CASE("more backups than other nodes are capped, and no_replication keeps one copy") {
    auto capped = make_cluster_map(static_backup(5), 1, nodes_with_ids({1, 2}));
    CHECK(holders(capped, 0) == std::vector<node_id>{1, 2});
    auto single = make_cluster_map(no_replication(), 1, nodes_with_ids({1, 2, 3}));
    for (slot_t s : {slot_t{0}, slot_t{8000}, slot_t{16383}}) CHECK(single.holders(s).size() == 1);
    CHECK(make_cluster_map(static_backup(2), 1, {}).holders(0).empty());
}

TEST_CASE("the map finds nodes by id and keys by slot") {
    auto m = make_cluster_map(static_backup(2), 7, nodes_with_ids({30, 10, 20}));
    CHECK(m.epoch() == 7);
    REQUIRE(m.find(10));
    CHECK(m.find(10)->port == 7401);
    CHECK_FALSE(m.find(11));
    CHECK(m.holders_of_key("foo").front() == 20);  // slot 12182, in the third range
    CHECK(m.holds(30, key_slot("foo")));
}

TEST_CASE("a map swapped while readers run is seen whole, and epochs only grow") {
    cluster_view view(make_cluster_map(static_backup(2), 1, nodes_with_ids({1, 2, 3})));
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> bad{0};
    std::vector<std::thread> readers;
    for (int t = 0; t < 2; ++t)
        readers.emplace_back([&] {
            std::uint64_t last = 0;
            while (!stop.load(std::memory_order_relaxed)) {
                const auto& m = view.current();
                // Every map of this test has epoch E and E+2 nodes, each slot held by 3 of them.
                if (m.epoch() < last || m.nodes().size() != m.epoch() + 2 || m.holders(9000).size() != 3) ++bad;
                last = m.epoch();
            }
        });
    for (std::uint64_t e = 2; e <= 200; ++e) {
        std::vector<node_id> ids;
        for (node_id i = 1; i <= e + 2; ++i) ids.push_back(i);
        auto nodes = nodes_with_ids({});
        for (auto i : ids) nodes.push_back({i, "127.0.0.1", static_cast<std::uint16_t>(7000 + i), node_state::member});
        view.publish(make_cluster_map(static_backup(2), e, std::move(nodes)));
    }
    stop = true;
    for (auto& t : readers) t.join();
    CHECK(bad.load() == 0);
    CHECK(view.current().epoch() == 200);
    CHECK_THROWS_AS(view.publish(make_cluster_map(static_backup(2), 200, nodes_with_ids({1}))), std::invalid_argument);
}

namespace {
struct not_a_policy {
    explicit not_a_policy(std::size_t) {}
};
}  // namespace

TEST_CASE("the policy concept names what the peer calls, and the library's rule acknowledges any reachable copy") {
    STATIC_REQUIRE_FALSE(replication_policy<not_a_policy>);
    STATIC_REQUIRE_FALSE(replication_policy<int>);
    CHECK(static_backup(2).acknowledged(1, 3));  // every reachable holder: the one that took it suffices
    CHECK(no_replication().acknowledged(1, 1));
}

TEST_CASE("maps that route alike have one digest, and any difference in nodes or placement changes it") {
    auto base = make_cluster_map(static_backup(2), 1, nodes_with_ids({1, 2, 3}));
    CHECK(make_cluster_map(static_backup(2), 1, nodes_with_ids({1, 2, 3})).digest() == base.digest());
    CHECK(make_cluster_map(static_backup(1), 1, nodes_with_ids({1, 2, 3})).digest() != base.digest());
    CHECK(make_cluster_map(static_backup(2), 1, nodes_with_ids({1, 2, 3, 4})).digest() != base.digest());
    CHECK(make_cluster_map(static_backup(2), 1, nodes_with_ids({2, 1, 3})).digest() != base.digest());
    CHECK(make_cluster_map(static_backup(2), 2, nodes_with_ids({1, 2, 3})).digest() != base.digest());
    auto moved = nodes_with_ids({1, 2, 3});
    moved[2].port = 9999;
    CHECK(make_cluster_map(static_backup(2), 1, moved).digest() != base.digest());
}

// Nodes that would count a write differently must not talk: the rule, R, the policy and the floor
// on copies are in what they compare when they connect, static or live.
TEST_CASE("the acknowledgement rules are part of a map's hello digest") {
    cluster_settings base;
    for (std::uint64_t i = 0; i < 3; ++i) base.peers.push_back({i, "127.0.0.1", static_cast<std::uint16_t>(7400 + i), {}, {}});
    for (bool live : {false, true}) {
        auto a = base;
        a.live_membership = live;
        const auto digest = initial_cluster_map(a).hello_digest();
        CHECK(initial_cluster_map(a).hello_digest() == digest);
        auto majority = a;
        majority.consistency_rule = consistency::majority;
        CHECK(initial_cluster_map(majority).hello_digest() != digest);
        auto floor = a;
        floor.min_copies = 2;
        CHECK(initial_cluster_map(floor).hello_digest() != digest);
        auto fewer = a;
        fewer.backups = 1;
        CHECK(initial_cluster_map(fewer).hello_digest() != digest);
    }
    auto live = base;
    live.live_membership = true;
    CHECK(initial_cluster_map(live).hello_digest() != initial_cluster_map(base).hello_digest());
}
