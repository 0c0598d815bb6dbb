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

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "dhtkit/net/address.hpp"
#include "dhtkit/peer/settings.hpp"

namespace dhtkit {

struct config_error : settings_error {
    using settings_error::settings_error;
};

namespace detail {

class config_reader {
public:
    config_reader(const toml::table& root, std::filesystem::path source)
        : root_(root), source_(std::move(source)), base_(source_.parent_path()) {}

    [[noreturn]] void fail(std::string_view key, std::string_view expected) const {
        throw config_error(fmt::format("{}: key '{}': expected {}", source_.string(), key, expected));
    }

    template <class T>
    T integer(toml::node_view<const toml::node> node, std::string_view key, T low, T high,
              std::optional<T> fallback) const {
        if (!node) {
            if (fallback) return *fallback;
            fail(key, fmt::format("an integer from {} to {} (it is missing)", low, high));
        }
        auto value = node.value<std::int64_t>();
        if (!node.is_integer() || !value || *value < static_cast<std::int64_t>(low) ||
            static_cast<std::uint64_t>(*value) > static_cast<std::uint64_t>(high))
            fail(key, fmt::format("an integer from {} to {}", low, high));
        return static_cast<T>(*value);
    }

    std::string text(toml::node_view<const toml::node> node, std::string_view key) const {
        auto value = node.value<std::string>();
        if (!node.is_string() || !value || value->empty()) fail(key, "a non-empty string");
        return *value;
    }

    std::filesystem::path path(toml::node_view<const toml::node> node, std::string_view key) const {
        std::filesystem::path p = text(node, key);
        return p.is_absolute() ? p : (base_ / p).lexically_normal();
    }

    const toml::table& root() const noexcept { return root_; }

private:
    const toml::table& root_;
    std::filesystem::path source_;
    std::filesystem::path base_;
};

// The content of a file that holds a secret, which must be a regular file that only its owner
// can read: a secret that others on the host can read is no secret.
inline std::string read_secret_file(const std::filesystem::path& file, const std::filesystem::path& source,
                                    std::string_view key) {
    struct stat st {};
    if (::stat(file.c_str(), &st) != 0)
        throw config_error(fmt::format("{}: {}: cannot read {}: {}", source.string(), key, file.string(), std::strerror(errno)));
    if (!S_ISREG(st.st_mode))
        throw config_error(fmt::format("{}: {}: {} is not a regular file", source.string(), key, file.string()));
    if (st.st_mode & 077)
        throw config_error(fmt::format("{}: {}: {} can be read by others (mode {:04o}): chmod 600 it", source.string(),
                                       key, file.string(), st.st_mode & 07777));
    std::ifstream in(file, std::ios::binary);
    std::string secret((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof())
        throw config_error(fmt::format("{}: {}: cannot read {}", source.string(), key, file.string()));
    return secret;
}

// The key made from a cluster secret file (at least 16 bytes).
inline std::shared_ptr<const protocol::cluster_key> read_cluster_secret(const std::filesystem::path& file,
                                                                        const std::filesystem::path& source) {
    auto secret = read_secret_file(file, source, "security.cluster_secret_file");
    if (secret.size() < 16)
        throw config_error(fmt::format("{}: security.cluster_secret_file: {} holds {} bytes; a secret needs at least 16",
                                       source.string(), file.string(), secret.size()));
    auto key = std::make_shared<protocol::cluster_key>(protocol::derive_key(secret));
    sodium_memzero(secret.data(), secret.size());
    return key;
}

// A client password file: its first line.
inline std::string read_client_password(const std::filesystem::path& file, const std::filesystem::path& source) {
    auto text = read_secret_file(file, source, "security.client_password_file");
    auto password = text.substr(0, text.find_first_of("\r\n"));
    sodium_memzero(text.data(), text.size());
    if (password.empty())
        throw config_error(fmt::format("{}: security.client_password_file: {} holds no password on its first line",
                                       source.string(), file.string()));
    return password;
}

// Every table and key a cluster file may hold; anything else is a mistake worth stopping for
// (`threds`, `[replicaton]`), not a setting to ignore.
struct known_table {
    std::string_view name;
    std::vector<std::string_view> keys;
};
inline const std::vector<known_table>& known_tables() {
    static const std::vector<known_table> tables{
        {"pool", {"threads", "dispatch"}},
        {"limits", {"max_key_bytes", "max_value_bytes", "max_in_flight", "max_output_bytes", "idle_timeout_s"}},
        {"replication", {"backups", "consistency", "max_clock_skew_ms", "policy", "heal_mb_per_s", "min_copies", "tombstone_purge_s"}},
        {"membership", {"probe_interval_ms", "probe_timeout_ms", "suspicion_mult", "indirect_probes", "sync_interval_ms",
                        "gossip_interval_ms", "anti_entropy_s", "leave_on_stop"}},
        {"storage", {"mode", "fsync", "compact_after_mb"}},
        {"resp", {"route"}},
        {"security", {"cluster_secret_file", "client_password_file"}},
        {"supervisor", {"max_restarts", "window_s"}},
        {"peers", {"id", "host", "port", "resp_port", "shared", "data"}},
    };
    return tables;
}

// Levenshtein distance, for "did you mean".
inline std::size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<std::size_t> row(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        std::size_t diagonal = row[0];
        row[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t up = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diagonal = up;
        }
    }
    return row[b.size()];
}

// ", did you mean 'x'?" for the nearest of `names` to `name`, when one is near enough.
inline std::string nearest(std::string_view name, const std::vector<std::string_view>& names, std::string_view prefix) {
    std::string_view best;
    std::size_t best_distance = std::max<std::size_t>(2, name.size() / 3) + 1;
    for (auto n : names)
        if (auto d = edit_distance(name, n); d < best_distance) {
            best = n;
            best_distance = d;
        }
    return best.empty() ? std::string() : fmt::format(" (did you mean '{}{}'?)", prefix, best);
}

// Throws for the first table or key the file has that no setting reads.
inline void check_known(const toml::table& root, const std::filesystem::path& source) {
    std::vector<std::string_view> tables;
    for (const auto& t : known_tables()) tables.push_back(t.name);
    auto check_keys = [&](const toml::table& t, const known_table& spec, const std::string& where) {
        for (const auto& [k, v] : t) {
            if (std::find(spec.keys.begin(), spec.keys.end(), k.str()) != spec.keys.end()) continue;
            throw config_error(fmt::format("{}: unknown key '{}.{}'{}", source.string(), where, k.str(),
                                           nearest(k.str(), spec.keys, std::string(where) + ".")));
        }
    };
    for (const auto& [k, v] : root) {
        auto spec = std::find_if(known_tables().begin(), known_tables().end(),
                                 [&](const known_table& t) { return t.name == k.str(); });
        if (spec == known_tables().end())
            throw config_error(fmt::format("{}: unknown {} '{}'{}", source.string(), v.is_table() ? "table" : "key",
                                           k.str(), nearest(k.str(), tables, "")));
        if (const auto* t = v.as_table()) check_keys(*t, *spec, std::string(k.str()));
        if (const auto* a = v.as_array())
            for (std::size_t i = 0; i < a->size(); ++i)
                if (const auto* t = (*a)[i].as_table()) check_keys(*t, *spec, fmt::format("{}[{}]", k.str(), i));
    }
}

}  // namespace detail

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
    constexpr auto size_max = std::numeric_limits<std::size_t>::max() / 2;

    c.pool_threads = in.integer<std::size_t>(view["pool"]["threads"], "pool.threads", 1, 1024, 4);
    if (auto d = view["pool"]["dispatch"]) {
        auto model = in.text(d, "pool.dispatch");
        if (model != "pool" && model != "loop") in.fail("pool.dispatch", "\"pool\" or \"loop\"");
        c.dispatch = model == "pool" ? dispatch_model::pool : dispatch_model::loop;
    }
    c.limits.max_key_bytes = in.integer<std::size_t>(view["limits"]["max_key_bytes"],
                                                     "limits.max_key_bytes", 1, 65535, 1024);
    c.limits.max_value_bytes = in.integer<std::size_t>(view["limits"]["max_value_bytes"],
                                                       "limits.max_value_bytes", 0, size_max, 1 << 20);
    c.limits.max_in_flight = in.integer<std::size_t>(view["limits"]["max_in_flight"],
                                                     "limits.max_in_flight", 1, 65536, 128);
    c.limits.max_output_bytes = in.integer<std::size_t>(view["limits"]["max_output_bytes"],
                                                        "limits.max_output_bytes", 4096, size_max, 1 << 20);
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
        if (policy != "static" && policy != "dynamic") in.fail("replication.policy", "\"static\" or \"dynamic\"");
        c.live_membership = policy == "dynamic";
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
        for (std::size_t j = 0; j < c.peers.size(); ++j)
            if (c.peers[j].host == pc.host && c.peers[j].port == pc.port)
                in.fail(at + ".port", fmt::format("an address of its own ({}:{} is peers[{}]'s too)", pc.host, pc.port, j));
            else if (c.peers[j].host == pc.host && pc.resp_port &&
                     (c.peers[j].port == pc.resp_port || c.peers[j].resp_port == pc.resp_port || c.peers[j].resp_port == pc.port))
                in.fail(at + ".resp_port", fmt::format("a port no other peer on {} uses", pc.host));
        if (pc.resp_port && pc.resp_port == pc.port) in.fail(at + ".resp_port", "a port other than its own port");
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

// A peer that is not in the file joins a live cluster (dhtkit-peer --join JOIN --listen LISTEN
// --dir DIR): it is added to `cluster` as a peer that is not a seed, its shared and data folders
// inside DIR. Its node id is chosen once, at random above every id a file may give (2^62), and
// kept in DIR/data/node_id, so that a restart is the same node. Returns the id.
inline std::uint64_t add_joining_peer(cluster_settings& cluster, const std::string& join, const std::string& listen,
                                      const std::filesystem::path& dir) {
    const std::string where = cluster.source.empty() ? std::string("the cluster settings") : cluster.source.string();
    if (!cluster.live_membership)
        throw config_error(fmt::format("{}: --join needs [replication] policy = \"dynamic\"", where));
    auto split = [](const std::string& text, std::string_view flag) {
        net::endpoint::host_port hp;
        try {
            hp = net::endpoint::split(text);
        } catch (const std::invalid_argument& e) {
            throw config_error(fmt::format("{} {}: {}", flag, text, e.what()));
        }
        if (hp.host.empty() || hp.port == 0)
            throw config_error(fmt::format("{} {}: expected HOST:PORT, the port a number from 1 to 65535", flag, text));
        return std::pair{std::string(hp.host), hp.port};
    };
    (void)split(join, "--join");
    auto [host, port] = split(listen, "--listen");
    peer_settings p;
    p.host = host;
    p.port = port;
    p.seed = false;
    const auto base = std::filesystem::absolute(dir);
    p.shared_dir = base / "shared";
    p.data_dir = base / "data";
    std::filesystem::create_directories(p.shared_dir);
    std::filesystem::create_directories(p.data_dir);
    const auto id_file = p.data_dir / "node_id";
    if (std::ifstream in(id_file); in) {
        if (!(in >> p.id) || p.id < (std::uint64_t{1} << 62))
            throw config_error(fmt::format("{}: not a node id this program wrote (remove it to start as a new node)",
                                           id_file.string()));
    } else {
        std::random_device rd;
        p.id = (std::uint64_t{1} << 62) | ((std::uint64_t{rd()} << 32 | rd()) & ((std::uint64_t{1} << 62) - 1));
        std::ofstream out(id_file);
        out << p.id << "\n";
        if (!out.flush()) throw config_error(fmt::format("{}: cannot write the node id", id_file.string()));
    }
    for (const auto& q : cluster.peers)
        if (q.host == p.host && q.port == p.port)
            throw config_error(fmt::format("--listen {}: peer {} of {} has that address", listen, q.id, where));
    cluster.join = join;
    cluster.peers.push_back(p);
    return p.id;
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
