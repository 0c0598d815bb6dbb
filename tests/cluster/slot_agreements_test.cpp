// What the purge waits for: the stamp by which every other holder of a slot agreed with this node.
#include <catch2/catch.hpp>

#include <dhtkit/cluster/slot_agreements.hpp>

#include <array>
#include <bitset>

using namespace dhtkit;

TEST_CASE("a slot counts as agreed by all from the earliest of its other holders' last agreements") {
    slot_agreements a;
    const std::array<node_id, 3> holders{1, 2, 3};  // this node is 1
    std::bitset<slot_count> first_two;
    first_two.set(0);
    first_two.set(1);
    // Nobody agreed yet: 0, so nothing of the slot is purged.
    CHECK(a.agreed_by_all(0, holders, 1, 500) == 0);
    a.agreed(2, first_two, 100);
    CHECK(a.agreed_by_all(0, holders, 1, 500) == 0);  // node 3 has not
    a.agreed(3, first_two, 150);
    CHECK(a.agreed_by_all(0, holders, 1, 500) == 100);
    // A later agreement moves it on; an earlier one reported late does not move it back.
    a.agreed(2, first_two, 200);
    a.agreed(3, first_two, 120);
    CHECK(a.agreed_by_all(1, holders, 1, 500) == 150);
    // Only the slots agreed on count.
    CHECK(a.agreed_by_all(2, holders, 1, 500) == 0);
    // A node holding a slot alone has nobody to wait for.
    const std::array<node_id, 1> alone{1};
    CHECK(a.agreed_by_all(2, alone, 1, 500) == 500);
}
