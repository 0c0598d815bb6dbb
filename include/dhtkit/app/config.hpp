#pragma once
// Peer and cluster settings (peer/settings.hpp) from a TOML file. Errors name the file, the key and what was
// expected. Relative paths in the file are taken relative to the file's folder, so a cluster file
// means the same thing from whatever directory a peer is started.
//
//   [pool]     threads = 4, dispatch = "loop" (or "pool")
//   [limits]   max_key_bytes = 1024, max_value_bytes = 1048576, max_in_flight = 128,
//              max_output_bytes = 1048576, idle_timeout_s = 30 (0: never)
//   [replication] backups = 2, consistency = "available" (or "majority"), max_clock_skew_ms = 60000,
//                 policy = "static" (or "dynamic": live membership, cluster/membership.hpp),
//                 heal_mb_per_s = 50 (dynamic: healing's and anti-entropy's pace; 0: none),
//                 min_copies = 1 (a write is acknowledged once at least this many holders applied it; 1..backups+1),
//                 tombstone_purge_s = 86400 (deletes older than this are forgotten; 0: never)
//   [membership]  probe_interval_ms = 1000, probe_timeout_ms = 500, suspicion_mult = 3,
//                 indirect_probes = 3, sync_interval_ms = 5000, gossip_interval_ms = 200,
//                 anti_entropy_s = 60, leave_on_stop = false
//   [storage]     mode = "memory" (or "log"), fsync = "everysec" (or "always", "no"), compact_after_mb = 64
//   [resp]        route = "moved" (or "forward": a peer forwards a RESP request for a key it does not hold)
//   [supervisor]  max_restarts = 5, window_s = 60
//   [security]    cluster_secret_file = "secret" (readable by its owner only; unset: an open cluster),
//                 client_password_file = "password" (readable by its owner only; unset: no password)
//   [[peers]]  id = 0, host = "127.0.0.1", port = 7400, shared = "p0/shared", data = "p0/data",
//              resp_port = 7500 (optional: RESP clients, as redis-cli, connect there)

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <system_error>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "dhtkit/app/config_reader.hpp"
#include "dhtkit/app/joining_peer.hpp"
#include "dhtkit/app/policy_registry.hpp"
#include "dhtkit/app/secret_files.hpp"
#include "dhtkit/peer/settings.hpp"

namespace dhtkit {

// Parses `text` as if read from `source` (which names the file in errors and anchors relative
// paths).
inline cluster_settings parse_config(std::string_view text, const std::filesystem::path& source) {
    toml::table root;
    try {
        root = toml::parse(text, source.string());
    } catch (const toml::parse_error& e) {
        throw config_error(fmt::format("{}:{}:{}: not valid TOML: {}", source.string(),
                                       e.source().begin.line, e.source().begin.column,
                                       e.description()));
    }
    detail::check_known(root, source);
    detail::config_reader in(root, std::filesystem::absolute(source));
    cluster_settings c;
    c.source = source;
    toml::node_view<const toml::node> view{root};

    c.pool_threads = in.integer<std::size_t>(view["pool"]["threads"], "pool.threads", 1, 1024, 4);
    if (auto d = view["pool"]["dispatch"]) {
        auto model = in.text(d, "pool.dispatch");
        if (model != "pool" && model != "loop") in.fail("pool.dispatch", "\"pool\" or \"loop\"");
        c.dispatch = model == "pool" ? dispatch_model::pool : dispatch_model::loop;
    }
    c.limits.max_key_bytes = in.integer<std::size_t>(view["limits"]["max_key_bytes"],
                                                     "limits.max_key_bytes", 1, 65535, 1024);
    // Ceilings a host can honour: a value up to 512 MiB (Redis's largest bulk string), an output
    // bound per connection up to 1 GiB.
    c.limits.max_value_bytes = in.integer<std::size_t>(view["limits"]["max_value_bytes"],
                                                       "limits.max_value_bytes", 0, std::size_t{512} << 20, 1 << 20);
    c.limits.max_in_flight = in.integer<std::size_t>(view["limits"]["max_in_flight"],
                                                     "limits.max_in_flight", 1, 65536, 128);
    c.limits.max_output_bytes = in.integer<std::size_t>(view["limits"]["max_output_bytes"],
                                                        "limits.max_output_bytes", 4096, std::size_t{1} << 30, 1 << 20);
    c.limits.idle_timeout = std::chrono::seconds(
        in.integer<std::int64_t>(view["limits"]["idle_timeout_s"], "limits.idle_timeout_s", 0, 86'400, 30));
    c.backups = in.integer<unsigned>(view["replication"]["backups"], "replication.backups", 0, 16, 2);
    if (auto r = view["replication"]["consistency"]) {
        auto rule = in.text(r, "replication.consistency");
        if (rule != "available" && rule != "majority") in.fail("replication.consistency", "\"available\" or \"majority\"");
        c.consistency_rule = rule == "majority" ? consistency::majority : consistency::available;
    }
    c.max_clock_skew = std::chrono::milliseconds(in.integer<std::int64_t>(
        view["replication"]["max_clock_skew_ms"], "replication.max_clock_skew_ms", 1, 86'400'000, 60'000));
    if (auto p = view["replication"]["policy"]) {
        auto policy = in.text(p, "replication.policy");
        if (!offered_policies::knows(policy)) in.fail("replication.policy", offered_policies::choices());
        c.policy = policy;
        c.live_membership = offered_policies::follows_membership(policy);
    }
    c.heal_bytes_per_s = in.integer<std::uint64_t>(view["replication"]["heal_mb_per_s"], "replication.heal_mb_per_s", 0,
                                                   100'000, 50) << 20;
    auto& ms = c.membership;
    ms.probe_interval = std::chrono::milliseconds(
        in.integer<std::int64_t>(view["membership"]["probe_interval_ms"], "membership.probe_interval_ms", 10, 60'000, 1000));
    ms.probe_timeout = std::chrono::milliseconds(in.integer<std::int64_t>(
        view["membership"]["probe_timeout_ms"], "membership.probe_timeout_ms", 1, ms.probe_interval.count() - 1,
        std::min<std::int64_t>(500, ms.probe_interval.count() / 2)));
    ms.suspicion_mult = in.integer<unsigned>(view["membership"]["suspicion_mult"], "membership.suspicion_mult", 1, 100, 3);
    ms.indirect_probes = in.integer<unsigned>(view["membership"]["indirect_probes"], "membership.indirect_probes", 0, 16, 3);
    ms.sync_interval = std::chrono::milliseconds(
        in.integer<std::int64_t>(view["membership"]["sync_interval_ms"], "membership.sync_interval_ms", 100, 3'600'000, 5000));
    ms.gossip_interval = std::chrono::milliseconds(
        in.integer<std::int64_t>(view["membership"]["gossip_interval_ms"], "membership.gossip_interval_ms", 10, 60'000, 200));
    ms.anti_entropy = std::chrono::seconds(
        in.integer<std::int64_t>(view["membership"]["anti_entropy_s"], "membership.anti_entropy_s", 0, 86'400, 60));
    if (auto l = view["membership"]["leave_on_stop"]) {
        if (!l.is_boolean()) in.fail("membership.leave_on_stop", "true or false");
        c.leave_on_stop = l.as_boolean()->get();
    }
    if (auto m = view["storage"]["mode"]) {
        auto mode = in.text(m, "storage.mode");
        if (mode != "memory" && mode != "log") in.fail("storage.mode", "\"memory\" or \"log\"");
        c.storage.log = mode == "log";
    }
    if (auto f = view["storage"]["fsync"]) {
        auto rule = in.text(f, "storage.fsync");
        if (rule != "always" && rule != "everysec" && rule != "no") in.fail("storage.fsync", "\"always\", \"everysec\" or \"no\"");
        c.storage.sync = rule == "always" ? fsync_rule::always : rule == "no" ? fsync_rule::no : fsync_rule::everysec;
    }
    c.storage.compact_after_bytes = in.integer<std::uint64_t>(view["storage"]["compact_after_mb"], "storage.compact_after_mb",
                                                              1, 1'000'000, 64) << 20;
    if (auto r = view["resp"]["route"]) {
        auto route = in.text(r, "resp.route");
        if (route != "moved" && route != "forward") in.fail("resp.route", "\"moved\" or \"forward\"");
        c.resp_forward = route == "forward";
    }
    if (auto s = view["security"]["cluster_secret_file"])
        c.cluster_key = detail::read_cluster_secret(in.path(s, "security.cluster_secret_file"), source);
    if (auto s = view["security"]["client_password_file"])
        c.client_password = detail::read_client_password(in.path(s, "security.client_password_file"), source);
    // A password alone would keep clients out and let anyone in as a node: the requests only nodes
    // make (replicate, sync, lease, leave) and membership's datagrams are proved by the secret.
    if (!c.client_password.empty() && !c.cluster_key)
        in.fail("security.cluster_secret_file",
                "a cluster secret beside client_password_file: without one, a connection that skips the password "
                "could still pose as a node (copy records in, stream every key out)");
    c.max_restarts = in.integer<unsigned>(view["supervisor"]["max_restarts"], "supervisor.max_restarts", 0, 1000, 5);
    c.restart_window_s = in.integer<unsigned>(view["supervisor"]["window_s"], "supervisor.window_s", 1, 86400, 60);

    const toml::array* peers = root["peers"].as_array();
    if (!peers || peers->empty()) in.fail("peers", "an array of tables [[peers]] with at least one peer");
    std::set<std::uint64_t> ids;
    for (std::size_t i = 0; i < peers->size(); ++i) {
        const std::string at = fmt::format("peers[{}]", i);
        if (!(*peers)[i].is_table()) in.fail(at, "a table with id, host, port, shared and data");
        toml::node_view<const toml::node> p{(*peers)[i]};
        peer_settings pc;
        pc.id = in.integer<std::uint64_t>(p["id"], at + ".id", 0, std::uint64_t{1} << 62, std::nullopt);
        if (!ids.insert(pc.id).second) in.fail(at + ".id", fmt::format("a unique id ({} is used twice)", pc.id));
        pc.host = in.text(p["host"], at + ".host");
        pc.port = in.integer<std::uint16_t>(p["port"], at + ".port", 1, 65535, std::nullopt);
        if (p["resp_port"]) pc.resp_port = in.integer<std::uint16_t>(p["resp_port"], at + ".resp_port", 1, 65535, std::nullopt);
        pc.shared_dir = in.path(p["shared"], at + ".shared");
        pc.data_dir = in.path(p["data"], at + ".data");
        // Every port of the file is its own on its host: a peer's port and its resp_port, against
        // each other and against every other peer's.
        if (pc.resp_port && pc.resp_port == pc.port) in.fail(at + ".resp_port", "a port other than its own port");
        for (std::size_t j = 0; j < c.peers.size(); ++j) {
            const auto& o = c.peers[j];
            if (o.host != pc.host) continue;
            auto taken = [&](std::uint16_t port) { return port && (port == o.port || port == o.resp_port); };
            if (taken(pc.port))
                in.fail(at + ".port", fmt::format("a port of its own ({}:{} is peers[{}]'s too)", pc.host, pc.port, j));
            if (taken(pc.resp_port))
                in.fail(at + ".resp_port",
                        fmt::format("a port of its own ({}:{} is peers[{}]'s too)", pc.host, pc.resp_port, j));
        }
        c.peers.push_back(std::move(pc));
    }
    // More backups than other peers would only copy a key onto the same peers again. (Not with
    // live membership: peers that join later add room; the placement takes what there is.)
    if (!c.live_membership && c.backups >= c.peers.size() && c.backups > 0)
        c.backups = static_cast<unsigned>(c.peers.size() - 1);
    c.tombstone_purge = std::chrono::seconds(in.integer<std::int64_t>(
        view["replication"]["tombstone_purge_s"], "replication.tombstone_purge_s", 0, 10 * 365 * 86'400, 86'400));
    c.min_copies = in.integer<std::size_t>(view["replication"]["min_copies"], "replication.min_copies", 1,
                                           std::size_t{c.backups} + 1, 1);
    return c;
}

inline cluster_settings load_config(const std::filesystem::path& file) {
    std::error_code ec;
    const auto st = std::filesystem::status(file, ec);
    if (st.type() == std::filesystem::file_type::not_found)
        throw config_error(fmt::format("{}: no such config file", file.string()));
    if (!std::filesystem::is_regular_file(st))
        throw config_error(fmt::format("{}: cannot read the config: {}", file.string(),
                                       ec ? ec.message() : std::string("not a regular file")));
    std::ifstream in(file, std::ios::binary);
    if (!in) throw config_error(fmt::format("{}: cannot open the config", file.string()));
    std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return parse_config(content, file);
}

}  // namespace dhtkit
