// Peers composed in code, in this process, with replication policies written here and not in the
// library: the map, the copies and the acknowledgement rule follow whatever the policy says.
#include <catch2/catch.hpp>

#include <dhtkit/peer/peer.hpp>

#include "in_process_cluster.hpp"

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

using namespace dhtkit;
using namespace std::chrono_literals;
using test::in_process_cluster;

namespace {

// Every node holds every slot, and a write counts only once all of them applied it.
struct every_node {
    static constexpr bool follows_membership = false;
    static constexpr std::string_view name = "every-node";
    every_node(std::size_t, consistency) {}
    [[nodiscard]] slot_table place(const std::vector<node>& nodes) const {
        slot_table t;
        std::vector<node_id> all;
        for (const auto& n : nodes) all.push_back(n.id);
        if (!all.empty()) t.assign({0, slot_count - 1}, all);
        return t;
    }
    [[nodiscard]] bool acknowledged(std::size_t applied, std::size_t holders) const { return applied == holders; }
    [[nodiscard]] std::size_t quorum(std::size_t) const { return 1; }
};

// Every slot on the last node alone.
struct last_node_only {
    static constexpr bool follows_membership = false;
    static constexpr std::string_view name = "last-node-only";
    last_node_only(std::size_t, consistency) {}
    [[nodiscard]] slot_table place(const std::vector<node>& nodes) const {
        slot_table t;
        if (!nodes.empty()) t.assign({0, slot_count - 1}, {nodes.back().id});
        return t;
    }
    [[nodiscard]] bool acknowledged(std::size_t applied, std::size_t) const { return applied >= 1; }
    [[nodiscard]] std::size_t quorum(std::size_t) const { return 1; }
};

std::string stat_of(const std::string& report, std::string_view name) {
    std::string text = "\n" + report;
    auto at = text.find(fmt::format("\n{}=", name));
    if (at == std::string::npos) return {};
    auto start = at + name.size() + 2;
    return text.substr(start, text.find('\n', start) - start);
}

}  // namespace

TEST_CASE("a policy written in a test places every slot on every node, and a write needs all of them") {
    STATIC_REQUIRE(replication_policy<every_node>);
    in_process_cluster<every_node> cluster(3);
    auto c = cluster.client();
    REQUIRE(c.holders("k") == std::vector<node_id>{100, 101, 102});
    REQUIRE(c.put("k", "v").ok());
    // Acknowledged means applied on every node: each answers from its own table.
    for (node_id n : {100, 101, 102}) CHECK(c.call(n, protocol::opcode::get, "k").value == "v");
    for (auto& p : cluster.peers) CHECK(stat_of(p->stats_report(), "slots_held") == "16384");

    // With one node gone this policy's rule refuses: two of three applied is not enough.
    cluster.peers.back()->stop();
    auto r = c.call(100, protocol::opcode::put, "k2", "v2");
    CHECK(r.code == protocol::status::unavailable);
    CHECK_THAT(r.value, Catch::Contains("only 2 of the 3 holders applied the write"));
    CHECK(c.put("k3", "v3").code == protocol::status::unavailable);  // every holder left says the same
}

TEST_CASE("a policy written in a test puts every slot on one node: others refuse, nothing is copied") {
    in_process_cluster<last_node_only> cluster(3);
    auto c = cluster.client();
    REQUIRE(c.holders("k") == std::vector<node_id>{102});
    REQUIRE(c.put("k", "v").ok());
    CHECK(c.call(102, protocol::opcode::get, "k").value == "v");
    for (node_id n : {100, 101}) {
        auto r = c.call(n, protocol::opcode::get, "k");
        CHECK(r.code == protocol::status::refused);
        CHECK_THAT(r.value, Catch::Contains("held by peer 102"));
    }
    for (auto& p : cluster.peers) CHECK(stat_of(p->stats_report(), "copies_sent") == "0");
    CHECK(stat_of(cluster.peers[0]->stats_report(), "slots_held") == "0");
}

TEST_CASE("a peer composed in code serves slots by the default policy, its dispatch model chosen at run time") {
    auto model = GENERATE(dispatch_model::loop, dispatch_model::pool);
    in_process_cluster<static_backup> cluster(2, model);
    auto c = cluster.client();
    for (int i = 0; i < 50; ++i) REQUIRE(c.put(fmt::format("{{user}}.{}", i), std::to_string(i)).ok());
    // One hash tag, one slot: every key of it has the same home and backup.
    auto holders = c.holders("{user}.0");
    CHECK(holders.size() == 2);
    for (int i = 0; i < 50; ++i) {
        CHECK(c.holders(fmt::format("{{user}}.{}", i)) == holders);
        CHECK(c.call(holders[1], protocol::opcode::get, fmt::format("{{user}}.{}", i)).value == std::to_string(i));
    }
}

TEST_CASE("a peer that cannot start stops what it started: its port is free again, no thread is left running") {
    const auto dir = std::filesystem::temp_directory_path() / fmt::format("dhtkit-halfstart-{}", ::getpid());
    std::filesystem::remove_all(dir);
    auto taken = net::tcp_listener::bind(net::endpoint::parse("127.0.0.1:0"));  // the RESP port: someone else's
    std::uint16_t port = 0;
    {
        auto probe = net::tcp_listener::bind(net::endpoint::parse("127.0.0.1:0"));
        port = probe.local().port();
    }
    cluster_settings settings;
    settings.pool_threads = 1;
    settings.peers.push_back({7, "127.0.0.1", port, dir / "shared", dir / "data"});
    settings.peers.back().resp_port = taken.local().port();
    {
        peer<> p(settings, 7);
        p.on_log([](const std::string&) {});
        // It got as far as its own port, the file service, dispatch and its loop's timers before
        // the RESP port failed.
        CHECK_THROWS_WITH(p.start(), Catch::Contains(std::to_string(taken.local().port())));
        // What it started is stopped before the failure reaches the caller: its port is free.
        CHECK_NOTHROW(net::tcp_listener::bind(net::endpoint::parse(fmt::format("127.0.0.1:{}", port))));
        p.stop();  // nothing to stop
    }

    // Started whole, then stopped: the port is free before the peer goes.
    settings.peers.back().resp_port = 0;
    {
        peer<> p(settings, 7);
        p.on_log([](const std::string&) {});
        p.start();
        p.stop();
        CHECK_NOTHROW(net::tcp_listener::bind(net::endpoint::parse(fmt::format("127.0.0.1:{}", port))));
        p.stop();  // again: nothing left to stop
    }
    std::filesystem::remove_all(dir);
}
