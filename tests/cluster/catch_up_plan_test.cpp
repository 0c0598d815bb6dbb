// Which groups of slots a catch-up may serve, from how each holder's stream ended.
#include <catch2/catch.hpp>

#include <dhtkit/cluster/catch_up_plan.hpp>
#include <dhtkit/cluster/slot_readiness.hpp>
#include <dhtkit/cluster/replication.hpp>

#include <vector>

using namespace dhtkit;
using ended = sync_outcome::ended;

namespace {

cluster_map three_of_three() {  // every node holds every slot: three groups, two others each
    std::vector<node> nodes;
    for (node_id id : {0, 1, 2}) nodes.push_back({id, "127.0.0.1", static_cast<std::uint16_t>(7400 + id), node_state::member});
    return make_cluster_map(static_backup(2), 1, nodes);
}

void heard(catch_up_plan& p, node_id id, ended how, bool from_serving = false) {
    for (auto& s : p.sources)
        if (s.at.id == id) {
            s.tried = true;
            s.last.how = how;
            s.last.from_serving = from_serving;
            s.broke_off = s.broke_off || how == ended::cut_short;
        }
}

std::size_t settle(catch_up_plan& p, bool alone = false) {
    std::size_t served = 0;
    p.settle(alone, [&](slot_range r) { served += r.last - r.first + 1u; });
    return served;
}

}  // namespace

TEST_CASE("a catch-up plan asks each group's other holders, and `with` only when asked to") {
    const auto map = three_of_three();
    auto p = catch_up_plan::from_map(map, 1, std::nullopt, true);
    REQUIRE(p.groups.size() == 3);
    for (const auto& g : p.groups) CHECK(g.others.size() == 2);
    CHECK(p.sources.size() == 2);

    auto without = catch_up_plan::from_map(map, 1, node_id{2}, false);  // a lapsed lease from 2
    for (const auto& g : without.groups) CHECK(g.others == std::vector<node_id>{0});
    REQUIRE(without.sources.size() == 1);
    CHECK(without.sources.front().at.id == 0);
}

TEST_CASE("a group is served on a serving holder's whole stream, or on every holder's, or alone") {
    const auto map = three_of_three();
    SECTION("one serving holder's complete stream is enough") {
        auto p = catch_up_plan::from_map(map, 1, std::nullopt, true);
        heard(p, 0, ended::complete, true);
        heard(p, 2, ended::unreachable);
        CHECK(settle(p) == slot_count);
        CHECK(p.unsure_slots() == 0);
    }
    SECTION("a stream cut short keeps its holder's groups waiting, unless alone") {
        auto p = catch_up_plan::from_map(map, 1, std::nullopt, true);
        heard(p, 0, ended::complete, false);  // a holder that was not serving
        heard(p, 2, ended::cut_short);
        CHECK(settle(p) == 0);
        heard(p, 2, ended::unreachable);  // it broke off once: unreachable now does not excuse it
        CHECK(settle(p) == 0);
        CHECK(p.unsure_slots() == slot_count);
        CHECK(settle(p, true) == slot_count);
        CHECK(p.complete_sources() == 1);
    }
    SECTION("a holder not asked yet is not taken for unreachable") {
        auto p = catch_up_plan::from_map(map, 1, std::nullopt, true);
        heard(p, 0, ended::complete, false);
        CHECK(settle(p) == 0);
        heard(p, 2, ended::unreachable);
        CHECK(settle(p) == slot_count);
    }
    SECTION("complete streams from every other holder are enough, serving or not") {
        auto p = catch_up_plan::from_map(map, 1, std::nullopt, true);
        heard(p, 0, ended::complete);
        heard(p, 2, ended::complete);
        CHECK(settle(p) == slot_count);
        CHECK(p.unsure_slots() == 0);
        CHECK(settle(p) == 0);  // served once
    }
}

TEST_CASE("anti-entropy with a peer back asks it alone; gained slots ask their nodes but this one") {
    const auto map = three_of_three();
    auto back = catch_up_plan::with_one(map, 1, 2);
    REQUIRE(back.sources.size() == 1);
    CHECK(back.sources.front().at.id == 2);
    CHECK(back.slots() == slot_count);
    CHECK(catch_up_plan::with_one(map, 1, 9).groups.empty());  // not in the map

    std::vector<std::pair<slot_range, std::vector<node>>> gained{
        {{0, 99}, {map.nodes()[0], map.nodes()[1]}}, {{100, 100}, {map.nodes()[1]}}};
    auto p = catch_up_plan::from_gained(1, gained);
    REQUIRE(p.groups.size() == 2);
    CHECK(p.groups[0].others == std::vector<node_id>{0});
    CHECK(p.groups[1].ready);  // nobody but this node to ask
    CHECK(p.slots() == 101);
}

TEST_CASE("slot readiness names the ranges still waiting") {
    slot_readiness r;
    CHECK(r.waiting() == fmt::format("0-{}", slot_count - 1));
    r.set({0, slot_count - 1}, true);
    CHECK(r.waiting().empty());
    r.set({5, 9}, false);
    r.set({100, 100}, false);
    CHECK(r.waiting() == "5-9,100-100");
    CHECK(r.unready() == 6);
}
