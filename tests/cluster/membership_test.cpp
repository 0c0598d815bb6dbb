// The SWIM view alone, on a clock of the test's: the precedence of records, refutation,
// suspicion timing, the epoch, probing order and piggybacked news.
#include <catch2/catch.hpp>

#include <dhtkit/cluster/membership.hpp>

#include <set>

using namespace dhtkit;
using namespace std::chrono_literals;

namespace {
node at(node_id id) { return {id, "127.0.0.1", static_cast<std::uint16_t>(7000 + id), node_state::member}; }
member rec(node_id id, std::uint64_t inc, node_state s) {
    auto n = at(id);
    n.state = s;
    return {n, inc};
}
const auto t0 = membership::clock::time_point{} + 1h;
}  // namespace

TEST_CASE("membership: the seeds start alive, a record wins by the precedence rules") {
    membership v(at(1), {at(2), at(3)}, {}, 1);
    REQUIRE(v.members().size() == 3);
    CHECK(v.live() == 3);
    const auto e0 = v.epoch();

    CHECK_FALSE(v.apply(rec(2, 0, node_state::member), t0));  // nothing new
    CHECK(v.apply(rec(2, 0, node_state::suspect), t0));       // suspect(i) beats alive(i)
    CHECK(v.find(2)->at.state == node_state::suspect);
    CHECK_FALSE(v.apply(rec(2, 0, node_state::suspect), t0));
    CHECK(v.apply(rec(2, 1, node_state::member), t0));  // the node refuted: alive(i+1)
    CHECK(v.find(2)->at.state == node_state::member);
    CHECK_FALSE(v.apply(rec(2, 0, node_state::failed), t0));  // an old death changes nothing
    CHECK(v.apply(rec(2, 1, node_state::failed), t0));
    CHECK_FALSE(v.apply(rec(2, 1, node_state::member), t0));  // dead(i) beats alive(i)
    CHECK(v.apply(rec(2, 2, node_state::member), t0));        // back, one life later
    CHECK(v.apply(rec(3, 0, node_state::left), t0));
    CHECK_FALSE(v.apply(rec(3, 5, node_state::failed), t0));  // departed stays departed
    CHECK(v.find(3)->at.state == node_state::left);
    CHECK(v.live() == 2);
    CHECK(v.epoch() > e0);

    // A suspicion of an unknown node says nothing; a death or an alive adds it.
    CHECK_FALSE(v.apply(rec(9, 0, node_state::suspect), t0));
    CHECK(v.find(9) == nullptr);
    CHECK(v.apply(rec(9, 3, node_state::member), t0));
    CHECK(v.find(9)->incarnation == 3);
}

TEST_CASE("membership: a node refutes a suspicion or death of itself with a higher incarnation") {
    membership v(at(1), {at(2)}, {}, 1);
    CHECK(v.apply(rec(1, 0, node_state::suspect), t0));
    CHECK(v.self().incarnation == 1);
    CHECK(v.self().at.state == node_state::member);
    CHECK_FALSE(v.apply(rec(1, 0, node_state::failed), t0));  // already refuted
    CHECK(v.apply(rec(1, 4, node_state::failed), t0));        // a previous life's death
    CHECK(v.self().incarnation == 5);
    CHECK(v.apply(rec(1, 7, node_state::member), t0));        // a previous life's alive
    CHECK(v.self().incarnation == 8);
    // The refutation is the first news.
    auto news = v.news(10);
    CHECK(std::count(news.begin(), news.end(), v.self()) == 1);
}

TEST_CASE("membership: a suspect that does not refute is dead after the suspicion timeout") {
    membership_options opt;
    opt.probe_interval = 1000ms;
    opt.suspicion_mult = 3;
    membership v(at(1), {at(2), at(3), at(4), at(5)}, opt, 1);
    CHECK(v.suspicion_timeout() == 3000ms);  // 5 members: log10(5) < 1
    REQUIRE(v.suspect(2, t0));
    CHECK_FALSE(v.suspect(2, t0));  // once
    CHECK_FALSE(v.tick(t0 + 2999ms));
    CHECK(v.find(2)->at.state == node_state::suspect);
    CHECK(v.tick(t0 + 3000ms));
    CHECK(v.find(2)->at.state == node_state::failed);
    CHECK(v.live() == 4);

    // A refutation in time keeps it alive.
    REQUIRE(v.suspect(3, t0));
    CHECK(v.apply(rec(3, 1, node_state::member), t0 + 2s));
    CHECK_FALSE(v.tick(t0 + 10s));
    CHECK(v.find(3)->at.state == node_state::member);
}

TEST_CASE("membership: two views that heard the same records in other orders agree, epochs included") {
    std::vector<member> heard = {rec(2, 0, node_state::suspect), rec(3, 2, node_state::member), rec(2, 1, node_state::member),
                                 rec(4, 0, node_state::failed), rec(6, 1, node_state::member), rec(3, 2, node_state::left)};
    membership a(at(1), {at(2), at(3), at(4)}, {}, 1), b(at(1), {at(2), at(3), at(4)}, {}, 2);
    for (const auto& r : heard) a.apply(r, t0);
    for (auto it = heard.rbegin(); it != heard.rend(); ++it) b.apply(*it, t0);
    CHECK(a.members() == b.members());
    CHECK(a.epoch() == b.epoch());
}

TEST_CASE("membership: every live member is probed once a round, helpers and news are bounded") {
    membership v(at(1), {at(2), at(3), at(4), at(5)}, {}, 42);
    v.apply(rec(5, 0, node_state::failed), t0);
    std::multiset<node_id> probed;
    for (int i = 0; i < 6; ++i) probed.insert(v.next_probe()->at.id);  // two rounds of three
    CHECK(probed == std::multiset<node_id>{2, 2, 3, 3, 4, 4});
    auto h = v.helpers(2, 5);
    CHECK(h.size() == 2);  // 3 and 4: not self, not the target, not the dead
    for (const auto& m : h) CHECK((m.at.id == 3 || m.at.id == 4));

    // Each record rides on a bounded number of messages: retransmit_mult * ceil(log10(N + 1)).
    std::size_t sent = 0;
    for (int i = 0; i < 100 && v.news_pending() > 0; ++i) sent += v.news(2).size();
    CHECK(v.news_pending() == 0);
    CHECK(sent == 5 * 4 * 1);  // 5 records (the seeds, self, the death), each 4 times

    membership alone(at(1), {}, {}, 1);
    CHECK_FALSE(alone.next_probe());
    CHECK_FALSE(alone.sync_partner());
}

TEST_CASE("membership: a node that leaves says so one incarnation up, and its view spreads it") {
    membership v(at(1), {at(2)}, {}, 1);
    v.leave();
    CHECK(v.self().at.state == node_state::left);
    CHECK(v.self().incarnation == 1);
    CHECK_FALSE(v.apply(rec(1, 3, node_state::suspect), t0));  // no refuting after leaving
    membership w(at(2), {at(1)}, {}, 1);
    CHECK(w.apply(v.self(), t0));
    CHECK(w.find(1)->at.state == node_state::left);
    CHECK(w.live() == 1);
}
