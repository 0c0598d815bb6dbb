#include <catch2/catch.hpp>

#include <dhtkit/cluster/leases.hpp>
#include <dhtkit/cluster/replication.hpp>

#include <thread>

using namespace dhtkit;
using namespace std::chrono_literals;

TEST_CASE("a grantor refuses a lease to a node that missed a copy, until it catches up") {
    lease_grants grants({.term = 300ms});
    REQUIRE(grants.grant(7) == 300ms);
    const auto granted_by = lease_grants::clock::now();
    // The copy missed: no write may count without node 7 before its lease has surely run out.
    const auto lease_over = grants.missed(7);
    CHECK(lease_over >= granted_by + 300ms);
    CHECK(grants.behind(7));
    CHECK_FALSE(grants.grant(7));  // refused: it would read a copy without that write
    CHECK(grants.grant(8) == 300ms);  // others are not affected
    grants.caught_up(7);
    CHECK(grants.grant(7) == 300ms);
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
