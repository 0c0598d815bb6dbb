// Live membership with real processes: failure detection (kill -9 is found and agreed on), a
// pause shorter than the suspicion timeout is refuted and not taken for a death, and gossip
// without the cluster's secret is refused.
#include <catch2/catch.hpp>

#include <signal.h>

#include <map>
#include <set>
#include <string>

#include <dhtkit/net/datagram.hpp>
#include <dhtkit/protocol/gossip.hpp>

#include <fmt/ranges.h>

#include "local_cluster.hpp"

using namespace std::chrono_literals;

namespace {

// Peer `id`'s view, as its stats say: member id -> state.
std::map<std::string, std::string> view_of(dhtkit::client& c, int id) {
    std::map<std::string, std::string> out;
    auto members = test::stat_value(c, static_cast<std::size_t>(id), "members");
    std::size_t at = 0;
    while (at < members.size()) {
        auto end = members.find(',', at);
        if (end == std::string::npos) end = members.size();
        auto item = members.substr(at, end - at);
        auto colon = item.find(':');
        if (colon != std::string::npos) out[item.substr(0, colon)] = item.substr(colon + 1);
        at = end + 1;
    }
    return out;
}

bool everyone_sees(dhtkit::client& c, const std::vector<int>& peers, const std::string& member, const std::string& state) {
    for (int p : peers) {
        auto v = view_of(c, p);
        if (v[member] != state) return false;
    }
    return true;
}

test::cluster_options dynamic(int peers) {
    test::cluster_options opt;
    opt.peers = peers;
    opt.policy = "dynamic";
    return opt;
}

}  // namespace

TEST_CASE("dynamic: every peer finds a killed peer dead, and the survivors agree on the map without it", "[dynamic]") {
    test::local_cluster cluster(dynamic(5));
    cluster.start_all();
    dhtkit::client c(cluster.config());
    const std::vector<int> all{0, 1, 2, 3, 4};
    REQUIRE(test::eventually([&] {
        for (int p : all)
            if (test::stat_value(c, static_cast<std::size_t>(p), "members_alive") != "5") return false;
        return true;
    }, 20s));

    cluster.kill(4);
    const std::vector<int> survivors{0, 1, 2, 3};
    // The defaults find a death in about 4 s; the bound is for sanitizer builds on busy cores.
    REQUIRE(test::eventually([&] { return everyone_sees(c, survivors, "4", "dead"); }, 30s));
    REQUIRE(test::eventually([&] {
        std::set<std::string> epochs;
        for (int p : survivors) {
            if (test::stat_value(c, static_cast<std::size_t>(p), "members_alive") != "4") return false;
            epochs.insert(test::stat_value(c, static_cast<std::size_t>(p), "epoch"));
        }
        return epochs.size() == 1;
    }, 20s));
    // The dead peer holds nothing in any survivor's map: the slots it held are spread over the others.
    std::size_t held = 0;
    for (int p : survivors) held += std::stoul(test::stat_value(c, static_cast<std::size_t>(p), "slots_held"));
    CHECK(held == 3 * dhtkit::slot_count);
}

TEST_CASE("dynamic: a peer paused for 2 s is suspected at most, refutes, and is never declared dead", "[dynamic]") {
    test::local_cluster cluster(dynamic(5));
    cluster.start_all();
    dhtkit::client c(cluster.config());
    const std::vector<int> others{0, 1, 3, 4};
    REQUIRE(test::eventually([&] {
        for (int p : {0, 1, 2, 3, 4})
            if (test::stat_value(c, static_cast<std::size_t>(p), "members_alive") != "5") return false;
        return true;
    }, 20s));

    std::set<std::string> seen;  // states of peer 2 in the others' views
    auto watch = [&] {
        for (int p : others) seen.insert(view_of(c, p)["2"]);
    };
    cluster.kill(2, SIGSTOP);
    auto resume_at = std::chrono::steady_clock::now() + 2s;
    while (std::chrono::steady_clock::now() < resume_at) watch();
    cluster.kill(2, SIGCONT);
    // Well past the moment a suspicion begun during the pause would have become a death.
    auto until = std::chrono::steady_clock::now() + 6s;
    while (std::chrono::steady_clock::now() < until) watch();
    INFO("states of the paused peer seen: " << fmt::format("{}", fmt::join(seen, ",")));
    CHECK(seen.count("dead") == 0);
    CHECK(everyone_sees(c, others, "2", "alive"));
}

TEST_CASE("dynamic: gossip without the cluster's secret, or with another, is refused and changes no view", "[dynamic]") {
    auto opt = dynamic(3);
    opt.secret = true;
    test::local_cluster cluster(opt);
    cluster.start_all();
    dhtkit::client c(cluster.config());
    REQUIRE(test::eventually([&] {
        for (int p : {0, 1, 2})
            if (test::stat_value(c, static_cast<std::size_t>(p), "members_alive") != "3") return false;
        return true;
    }, 20s));

    // "Peer 1 is dead, ten lives on": believed, it would take peer 1's slots away.
    dhtkit::protocol::gossip_message lie;
    lie.kind = dhtkit::protocol::gossip_kind::sync;
    lie.from = 2;
    lie.cluster = c.map().hello_digest();
    lie.records.push_back({{1, "127.0.0.1", cluster.port(1), dhtkit::node_state::failed}, 10});
    const auto wrong = dhtkit::protocol::derive_key("not this cluster's secret");
    auto sock = dhtkit::net::udp_socket::bind(dhtkit::net::endpoint::parse("127.0.0.1:0"));
    const auto to = dhtkit::net::endpoint::parse(fmt::format("127.0.0.1:{}", cluster.port(0)));
    const auto before = std::stoul(test::stat_value(c, 0, "gossip_refused"));
    sock.send_to(to, dhtkit::protocol::encode(lie, nullptr));
    sock.send_to(to, dhtkit::protocol::encode(lie, &wrong));
    sock.send_to(to, "not a datagram of ours");
    REQUIRE(test::eventually([&] { return std::stoul(test::stat_value(c, 0, "gossip_refused")) >= before + 3; }));
    CHECK(view_of(c, 0)["1"] == "alive");
    CHECK(test::stat_value(c, 0, "members_alive") == "3");
    // And nothing came back to the sender: a refused datagram gets no answer.
    std::string buffer;
    CHECK_FALSE(sock.wait(300ms));
}
