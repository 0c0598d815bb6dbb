// What a node acts on when its map changes (cluster/map_diff.hpp), on dynamic_backup's maps: the
// slots it gains and whom it catches them up from, the members back from the dead, a death, and
// the slot counts of its stats.
#include <catch2/catch.hpp>

#include <dhtkit/cluster/map_diff.hpp>
#include <dhtkit/cluster/replication.hpp>

#include <algorithm>
#include <set>
#include <vector>

using namespace dhtkit;

namespace {

cluster_map map_of(std::uint64_t epoch, const std::vector<std::pair<node_id, node_state>>& members, std::size_t backups = 1) {
    std::vector<node> nodes;
    for (auto [id, state] : members) nodes.push_back({id, "127.0.0.1", static_cast<std::uint16_t>(7000 + id), state});
    auto slots = dynamic_backup(backups).place(nodes);
    return cluster_map(epoch, std::move(nodes), std::move(slots), 42);
}

// The slots of `g`, each once; fails when two runs overlap or a run is empty.
std::set<slot_t> slots_in(const gained_slots& g) {
    std::set<slot_t> out;
    for (const auto& [range, from] : g) {
        REQUIRE(range.first <= range.last);
        for (std::size_t s = range.first; s <= range.last; ++s) REQUIRE(out.insert(static_cast<slot_t>(s)).second);
    }
    return out;
}

}  // namespace

TEST_CASE("a death: the survivors gain the dead node's copies and never ask it for them") {
    using enum node_state;
    const auto before = map_of(1, {{1, member}, {2, member}, {3, member}});
    const auto after = map_of(2, {{1, member}, {2, member}, {3, failed}});
    for (node_id self : {1u, 2u}) {
        const auto c = changes(before, after, self);
        CHECK(c.declared_dead);
        CHECK(c.back.empty());
        CHECK(c.placement_moved);
        const auto gained = slots_in(c.gained);
        std::set<slot_t> expected;
        for (std::size_t s = 0; s < slot_count; ++s)
            if (after.holds(self, static_cast<slot_t>(s)) && !before.holds(self, static_cast<slot_t>(s)))
                expected.insert(static_cast<slot_t>(s));
        CHECK(gained == expected);
        CHECK_FALSE(expected.empty());  // with R=1 of 3, each survivor takes some of node 3's
        for (const auto& [range, from] : c.gained) {
            REQUIRE_FALSE(from.empty());
            for (const auto& n : from) {
                CHECK(n.id != 3);
                CHECK(n.id != self);
            }
            // Ask lists are sorted, and neighbouring runs differ (else they would be one).
            CHECK(std::is_sorted(from.begin(), from.end(), [](const node& a, const node& b) { return a.id < b.id; }));
        }
        for (std::size_t i = 1; i < c.gained.size(); ++i) {
            const auto& [r0, f0] = c.gained[i - 1];
            const auto& [r1, f1] = c.gained[i];
            if (r0.last + 1u != r1.first) continue;
            CHECK_FALSE(std::equal(f0.begin(), f0.end(), f1.begin(), f1.end(),
                                   [](const node& a, const node& b) { return a.id == b.id; }));
        }
    }
}

TEST_CASE("a return: the node back from the dead catches up every slot it holds; the others see it back") {
    using enum node_state;
    const auto before = map_of(2, {{1, member}, {2, member}, {3, failed}});
    const auto after = map_of(3, {{1, member}, {2, member}, {3, member}});
    const auto mine = changes(before, after, 3);
    std::set<slot_t> held;
    for (std::size_t s = 0; s < slot_count; ++s)
        if (after.holds(3, static_cast<slot_t>(s))) held.insert(static_cast<slot_t>(s));
    CHECK(slots_in(mine.gained) == held);
    CHECK(mine.back.empty());  // itself: not a member it must compare with
    CHECK_FALSE(mine.declared_dead);

    const auto theirs = changes(before, after, 1);
    CHECK(theirs.back == std::vector<node_id>{3});
    CHECK_FALSE(theirs.declared_dead);
    CHECK(theirs.placement_moved);
}

TEST_CASE("the same placement under a new epoch changes nothing; a suspect is still placed") {
    using enum node_state;
    const auto before = map_of(1, {{1, member}, {2, member}, {3, member}});
    const auto after = map_of(2, {{1, member}, {2, member}, {3, suspect}});
    const auto c = changes(before, after, 1);
    CHECK(c.gained.empty());
    CHECK_FALSE(c.placement_moved);
    CHECK(c.back.empty());
    CHECK_FALSE(c.declared_dead);
}

TEST_CASE("slot counts: every slot has one home and R+1 holders among the nodes") {
    using enum node_state;
    for (std::size_t backups : {0u, 1u, 2u}) {
        const auto m = map_of(1, {{1, member}, {2, member}, {3, member}, {4, member}}, backups);
        std::size_t home = 0, held = 0;
        for (node_id id : {1u, 2u, 3u, 4u}) {
            const auto n = slots_of(m, id);
            CHECK(n.home > 0);
            CHECK(n.held >= n.home);
            home += n.home;
            held += n.held;
        }
        CHECK(home == slot_count);
        CHECK(held == slot_count * (backups + 1));
        CHECK(slots_of(m, 99).held == 0);
    }
}
