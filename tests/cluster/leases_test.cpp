#include <catch2/catch.hpp>

#include <dhtkit/cluster/lease_rules.hpp>
#include <dhtkit/cluster/leases.hpp>
#include <dhtkit/cluster/replication.hpp>

#include <algorithm>
#include <optional>
#include <set>
#include <thread>

using namespace dhtkit;
using namespace std::chrono_literals;

TEST_CASE("a grantor refuses a lease to a node that missed a copy, until it catches up") {
    lease_grants grants({.term = 300ms});
    REQUIRE(grants.grant(7).term == 300ms);
    const auto granted_by = lease_grants::clock::now();
    // The copy missed: no write may count without node 7 before its lease has surely run out.
    const auto lease_over = grants.missed(7);
    CHECK(lease_over >= granted_by + 300ms);
    CHECK(grants.behind(7));
    CHECK_FALSE(grants.grant(7));  // refused: it would read a copy without that write
    CHECK(grants.grant(8).term == 300ms);  // others are not affected
    grants.caught_up(7);
    CHECK(grants.grant(7).term == 300ms);
    // A node that asked since this one started and was refused holds no lease from here, and
    // knows this node is back: a write need not wait for it.
    grants.missed(9);
    CHECK_FALSE(grants.grant(9));
    CHECK(grants.missed(9) == lease_grants::clock::time_point{});
}

TEST_CASE("a grantor that just started counts no write without a holder that has not asked it yet") {
    // That holder may excuse this node as gone (it was, before this start) and answer reads
    // from a copy without the write: it must have asked once, or had time to find out.
    lease_grants grants({.term = 300ms, .first_ask_wait = 2000ms});
    const auto before = lease_grants::clock::now();
    grants.start();
    CHECK(grants.missed(5) >= before + 2000ms);
    CHECK_FALSE(grants.grant(5));  // it asks: behind, so refused, and now it knows
    CHECK(grants.missed(5) == lease_grants::clock::time_point{});
}

TEST_CASE("a held lease is current for its term from when it was asked, then lapses until renewed or excused") {
    lease_holdings held({1, 2});
    const auto now = lease_holdings::clock::now();
    CHECK_FALSE(held.valid(1, now));
    CHECK(held.lapsed(1, now));  // never granted: nothing vouches for this copy yet
    held.renewed(1, now - 100ms, 300ms);
    CHECK(held.valid(1, now));
    CHECK_FALSE(held.valid(1, now + 250ms));  // a pause this long makes it lapse
    CHECK(held.lapsed(1, now + 250ms));
    held.excuse(1, lease_holdings::absence::out_of_reach, now + 1000ms);
    CHECK(held.excused_as(1, now + 250ms) == lease_holdings::absence::out_of_reach);
    CHECK_FALSE(held.lapsed(1, now + 250ms));
    // An excuse runs out: a node paused that long asks (and catches up) before it answers again.
    CHECK_FALSE(held.excused(1, now + 1000ms));
    CHECK(held.lapsed(1, now + 1000ms));
    held.renewed(1, now, 300ms);  // a grant ends the excuse
    CHECK_FALSE(held.excused(1));
    held.revoke(1);  // "behind": not current any more
    CHECK_FALSE(held.valid(1, now));
    CHECK_FALSE(held.valid(99, now));  // a node it does not know vouches for nothing
}

TEST_CASE("the consistency rules: available needs one copy, majority more than half") {
    const static_backup available(2, consistency::available), majority(2, consistency::majority);
    CHECK(available.quorum(3) == 1);
    CHECK(available.acknowledged(1, 3));
    CHECK(majority.quorum(3) == 2);
    CHECK_FALSE(majority.acknowledged(1, 3));
    CHECK(majority.acknowledged(2, 3));
    CHECK(majority.quorum(5) == 3);
    CHECK(majority.quorum(1) == 1);
}

TEST_CASE("a node's lease grantors: the nodes it shares a slot with; under majority with a live map, every placed member") {
    auto ids = [](const std::vector<node>& nodes) {
        std::vector<node_id> out;
        for (const auto& n : nodes) out.push_back(n.id);
        return out;
    };
    std::vector<node> four;
    for (node_id i = 0; i < 4; ++i) four.push_back({i, "127.0.0.1", static_cast<std::uint16_t>(7400 + i)});
    // One backup, the peer after the home: node 0 holds its slots with 1, and node 3's with 3.
    const static_backup one(1);
    CHECK(ids(lease_grantors(make_cluster_map(one, 1, four), 0, one)) == std::vector<node_id>{1, 3});
    const static_backup two(2);
    CHECK(ids(lease_grantors(make_cluster_map(two, 1, four), 0, two)) == std::vector<node_id>{1, 2, 3});

    // A live map of five with one dead: under majority every placed member grants, the dead one not.
    auto five = four;
    five.push_back({4, "127.0.0.1", 7404, node_state::failed});
    five.push_back({5, "127.0.0.1", 7405, node_state::suspect});
    const dynamic_backup majority(1, consistency::majority);
    const cluster_map live(1, five, majority.place(five), /*identity=*/42);
    CHECK(ids(lease_grantors(live, 0, majority)) == std::vector<node_id>{1, 2, 3, 5});
    // Under "available", only those it shares a slot with.
    const dynamic_backup available(1, consistency::available);
    const cluster_map live_available(1, five, available.place(five), 42);
    std::set<node_id> shares;
    for (std::size_t s = 0; s < slot_count; ++s) {
        const auto h = live_available.holders(static_cast<slot_t>(s));
        if (std::find(h.begin(), h.end(), node_id{0}) == h.end()) continue;
        for (auto id : h)
            if (id != 0) shares.insert(id);
    }
    const auto sharing = ids(lease_grantors(live_available, 0, available));
    CHECK(std::set<node_id>(sharing.begin(), sharing.end()) == shares);
    CHECK(std::find(sharing.begin(), sharing.end(), node_id{4}) == sharing.end());
}

TEST_CASE("under majority with a live map, a lease passes only between nodes whose maps place slots alike") {
    // The 3/2 split test found this: after the heal, a member still on its own side's map (the
    // three taken for dead, a slot on itself) was leased to by grantors whose maps had moved that
    // slot elsewhere; they acknowledged writes of it without the member, which answered reads of
    // it from its copy, rounds old.
    std::vector<node> five;
    for (node_id i = 0; i < 5; ++i) five.push_back({i, "127.0.0.1", static_cast<std::uint16_t>(7500 + i)});
    auto split = five;
    for (node_id i = 0; i < 3; ++i) split[i].state = node_state::failed;
    const dynamic_backup majority(2, consistency::majority);
    const cluster_map healed(9, five, majority.place(five), 42), minority(7, split, majority.place(split), 42);
    REQUIRE(healed.placement_digest() != minority.placement_digest());
    // Suspicion moves no slot: the same placement, another epoch.
    auto suspected = five;
    suspected[1].state = node_state::suspect;
    CHECK(cluster_map(10, suspected, majority.place(suspected), 42).placement_digest() == healed.placement_digest());
    CHECK(lease_map(healed, majority) == healed.placement_digest());
    const dynamic_backup available(2, consistency::available);
    CHECK(lease_map(cluster_map(9, five, available.place(five), 42), available) == 0);  // any map will do

    // The grantor follows the healed map: an asker on the minority's map gets no lease. (A long
    // term: the checks below run while a lease granted here surely runs, however slow the host.)
    lease_grants grants({.term = 60s});
    CHECK(grants.follow(healed.placement_digest()) == lease_grants::clock::time_point{});  // nothing granted yet
    CHECK(grants.grant(4, minority.placement_digest()).why == lease_grants::refusal::other_map);
    CHECK(grants.grant(4, 0).why == lease_grants::refusal::other_map);
    CHECK_FALSE(grants.behind(4));  // nothing to catch up from here: the maps must agree first
    const auto before_grant = lease_grants::clock::now();
    REQUIRE(grants.grant(4, healed.placement_digest()));
    const auto after_grant = lease_grants::clock::now();
    // A new placement is acted on once every lease granted under the old one has surely run out.
    const auto act_at = grants.follow(minority.placement_digest());
    CHECK(act_at >= before_grant + grants.options().surely_over());
    CHECK(act_at <= after_grant + grants.options().surely_over());
    CHECK(grants.grant(4, healed.placement_digest()).why == lease_grants::refusal::other_map);
    // And until then it grants nothing under the new one either: its leases back one placement at a time.
    CHECK(grants.grant(3, minority.placement_digest()).why == lease_grants::refusal::settling);
    CHECK(grants.follow(healed.placement_digest()) == act_at);  // following back does not shorten the wait

    // The holder's side: a lease held counts only under the map it was asked under.
    lease_holdings held({0, 1, 2, 3});
    const auto now = lease_holdings::clock::now();
    for (node_id g = 0; g < 4; ++g) held.renewed(g, now, 300ms, healed.placement_digest());
    CHECK(held.valid(0, now, healed.placement_digest()));
    CHECK_FALSE(held.valid(0, now, minority.placement_digest()));
    CHECK(held.valid(0, now));  // time alone: the lease keeper's and the replicator's question
    const lease_rules<dynamic_backup> rules(4, majority, &held, 1);
    slot_t mine = 0;  // a slot node 4 holds under the minority's map
    while (!minority.holds(4, mine)) ++mine;
    CHECK(rules.members_short(healed) == std::nullopt);
    CHECK(rules.members_short(minority).has_value());  // leases of the healed map back nothing of the other
    CHECK_FALSE(rules.vouch(minority, mine).own_copy);
    if (healed.holds(4, mine)) CHECK(rules.vouch(healed, mine).own_copy);
}

TEST_CASE("a grantor that took a new map grants again under it once its last lease under the old one has run out") {
    lease_grants grants({.term = 20ms});
    (void)grants.follow(1);
    REQUIRE(grants.grant(7, 1));
    const auto settled = grants.follow(2);
    CHECK(grants.grant(7, 2).why == lease_grants::refusal::settling);
    std::this_thread::sleep_until(settled);  // the time is what is tested
    const auto again = grants.grant(7, 2);
    CHECK(again);
    CHECK(again.term == 20ms);
    CHECK(grants.grant(7, 1).why == lease_grants::refusal::other_map);
}
