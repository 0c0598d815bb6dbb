// A node's figures are data until the edge: the `stats` reply renders them as name=value lines,
// RESP INFO as Redis's sections, each from the typed values and not from each other's text.
#include <catch2/catch.hpp>

#include <dhtkit/peer/figures.hpp>
#include <dhtkit/peer/front/resp_admin.hpp>
#include <dhtkit/peer/stats.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

using namespace dhtkit;

TEST_CASE("figures keep their types and render as stats lines in the order added") {
    figures f;
    f.add("keys", std::size_t{12});
    f.add("open", std::int64_t{-1});
    f.add("healing_seconds", 1.23456, 3);
    f.add("members", "1:alive,2:dead");
    f.add("last_restart", "never");
    CHECK(f.lines() == "keys=12\nopen=-1\nhealing_seconds=1.235\nmembers=1:alive,2:dead\nlast_restart=never\n");
    REQUIRE(f.find("keys"));
    CHECK(std::get<std::uint64_t>(*f.find("keys")) == 12);
    CHECK(std::get<std::int64_t>(*f.find("open")) == -1);
    CHECK(std::get<figures::decimal>(*f.find("healing_seconds")).places == 3);
    CHECK(f.find("absent") == nullptr);
}

TEST_CASE("a peer's counters and its storage's figures, as the stats reply lists them") {
    peer_stats stats;
    stats.opened();
    stats.count(protocol::opcode::get);
    figures f;
    stats.report(f, 5, 2);
    const auto text = f.lines();
    CHECK(text.find("keys=5\nfiles=2\nconnections_open=1\nconnections_total=1\n") != std::string::npos);
    CHECK(text.find("\nop_get=1\n") != std::string::npos);
    CHECK(text.rfind("uptime_s=", 0) == 0);

    figures memory;
    add_storage(memory, storage_figures{}, nullptr);
    CHECK(memory.lines() == "storage=memory\n");
    figures log;
    log_figures::figures kept;
    kept.log_bytes = 4096;
    kept.compactions = 2;
    log_recovery replay;
    replay.snapshot_records = 3;
    replay.log_records = 4;
    add_storage(log, {"log", fsync_rule::always, kept}, &replay);
    CHECK(log.lines().rfind("storage=log\nfsync=always\nlog_bytes=4096\n", 0) == 0);
    CHECK(log.lines().find("\ncompactions=2\nreplayed_records=7\nreplay_seconds=0.000\n") != std::string::npos);
}

TEST_CASE("INFO takes its sections from the figures, and lists ours under # Stats") {
    figures f;
    f.add("uptime_s", 42.04, 1);
    f.add("connections_open", std::uint64_t{3});
    f.add("connections_total", std::uint64_t{7});
    f.add("backups", std::uint64_t{2});
    f.add("members", "1:alive,2:dead");
    f.add("spaced", "two words");
    const std::function<std::size_t()> keys = [] { return std::size_t{9}; };
    std::string o;
    const std::vector<std::string_view> args{"INFO"};
    resp_admin::info(o, args, {5, 7001, f, keys});
    CHECK(o.find("uptime_in_seconds:42.0\r\n") != std::string::npos);
    CHECK(o.find("connected_clients:3\r\n") != std::string::npos);
    CHECK(o.find("total_connections_received:7\r\n") != std::string::npos);
    CHECK(o.find("dhtkit_members:1:alive,2:dead\r\n") != std::string::npos);
    CHECK(o.find("dhtkit_spaced") == std::string::npos);  // a value with a space would break the line format
    CHECK(o.find("dhtkit_backups:2\r\n") != std::string::npos);
    CHECK(o.find("db0:keys=9,") != std::string::npos);
    std::string only;
    resp_admin::info(only, {"INFO", "clients"}, {5, 7001, f, keys});
    CHECK(only.find("# Clients") != std::string::npos);
    CHECK(only.find("# Stats") == std::string::npos);
}
