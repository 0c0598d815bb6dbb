#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <dhtkit/app/config.hpp>
#include <dhtkit/app/policy_registry.hpp>

#include <fstream>
#include <string_view>
#include <type_traits>

using namespace dhtkit;

namespace {
constexpr const char* good = R"(
[pool]
threads = 6
[limits]
max_key_bytes = 200
[replication]
backups = 1
[[peers]]
id = 0
host = "127.0.0.1"
port = 7400
shared = "p0/shared"
data = "/var/tmp/p0"
[[peers]]
id = 1
host = "::1"
port = 7401
shared = "../p1/shared"
data = "p1/data"
)";
}

TEST_CASE("a cluster file is read, with relative paths taken from the file's folder") {
    auto c = parse_config(good, "/etc/dhtkit/cluster.toml");
    CHECK(c.pool_threads == 6);
    CHECK(c.limits.max_key_bytes == 200);
    CHECK(c.limits.max_value_bytes == 1 << 20);  // a default
    CHECK(c.backups == 1);
    REQUIRE(c.peers.size() == 2);
    CHECK(c.peers[0].port == 7400);
    CHECK(c.peers[0].shared_dir == "/etc/dhtkit/p0/shared");
    CHECK(c.peers[0].data_dir == "/var/tmp/p0");
    CHECK(c.peers[1].shared_dir == "/etc/p1/shared");
    CHECK(c.peer(1).host == "::1");
    CHECK_THROWS_WITH(c.peer(9), Catch::Contains("no peer with id 9"));
}

namespace {
// The error that parsing `text` (as /x/c.toml) raises, or "no error".
std::string fails(const std::string& text) {
    try {
        parse_config(text, "/x/c.toml");
    } catch (const config_error& e) {
        return std::string(e.what());
    }
    return std::string("no error");
}
}  // namespace

TEST_CASE("config errors name the file, the key and what was expected") {
    std::string peer = "[[peers]]\nid=0\nhost=\"h\"\nport=1\nshared=\"s\"\ndata=\"d\"\n";
    CHECK_THAT(fails(""), Catch::Contains("/x/c.toml") && Catch::Contains("'peers'"));
    CHECK_THAT(fails("[pool]\nthreads = \"four\"\n" + peer),
               Catch::Contains("'pool.threads'") && Catch::Contains("an integer from 1 to 1024"));
    CHECK_THAT(fails("[pool]\nthreads = 0\n" + peer), Catch::Contains("'pool.threads'"));
    CHECK_THAT(fails("[[peers]]\nid=0\nhost=\"h\"\nport=70000\nshared=\"s\"\ndata=\"d\"\n"),
               Catch::Contains("'peers[0].port'") && Catch::Contains("1 to 65535"));
    CHECK_THAT(fails("[[peers]]\nid=0\nport=1\nshared=\"s\"\ndata=\"d\"\n"),
               Catch::Contains("'peers[0].host'") && Catch::Contains("non-empty string"));
    CHECK_THAT(fails(peer + peer), Catch::Contains("'peers[1].id'") && Catch::Contains("unique"));
    CHECK_THAT(fails("[[peers]]\nid=\n"), Catch::Contains("/x/c.toml:2") && Catch::Contains("not valid TOML"));
}

TEST_CASE("more backups than other peers are capped, and a missing file is a clear error") {
    std::string one = "[replication]\nbackups=5\n[[peers]]\nid=3\nhost=\"h\"\nport=1\nshared=\"s\"\ndata=\"d\"\n";
    CHECK(parse_config(one, "c.toml").backups == 0);
    CHECK_THROWS_WITH(load_config("/nonexistent/dhtkit.toml"),
                      Catch::Contains("/nonexistent/dhtkit.toml") && Catch::Contains("no such config file"));
    CHECK_THROWS_WITH(load_config("/tmp"), Catch::Contains("/tmp") && Catch::Contains("not a regular file"));
}

TEST_CASE("load_config reads a file from disk") {
    auto path = std::filesystem::temp_directory_path() / ("dhtkit-config-" + std::to_string(::getpid()) + ".toml");
    {
        std::ofstream out(path);
        out << good;
    }
    auto c = load_config(path);
    std::filesystem::remove(path);
    CHECK(c.peers.size() == 2);
    CHECK(c.peers[0].shared_dir == path.parent_path() / "p0/shared");
}

TEST_CASE("a cluster secret file must be readable by its owner only, and long enough") {
    const auto dir = std::filesystem::temp_directory_path() / ("dhtkit-secret-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const auto file = dir / "secret";
    const std::string text = std::string("[security]\ncluster_secret_file = \"secret\"\n") +
                             "[[peers]]\nid = 0\nhost = \"127.0.0.1\"\nport = 7400\nshared = \"s\"\ndata = \"d\"\n";
    using std::filesystem::perms;
    std::ofstream(file) << "sixteen bytes or more of secret";
    std::filesystem::permissions(file, perms::owner_read | perms::owner_write | perms::group_read);
    CHECK_THROWS_WITH(parse_config(text, dir / "c.toml"), Catch::Contains("can be read by others (mode 0640)") &&
                                                              Catch::Contains("chmod 600"));
    std::filesystem::permissions(file, perms::owner_read | perms::owner_write);
    auto c = parse_config(text, dir / "c.toml");
    REQUIRE(c.cluster_key);
    CHECK(*c.cluster_key == protocol::derive_key("sixteen bytes or more of secret"));
    CHECK_FALSE(parse_config(good, "/etc/dhtkit/cluster.toml").cluster_key);  // unset: an open cluster

    std::ofstream(file, std::ios::trunc) << "short";
    CHECK_THROWS_WITH(parse_config(text, dir / "c.toml"), Catch::Contains("at least 16"));
    std::ofstream(file, std::ios::trunc) << std::string(16, 'a');  // long enough, and guessed at once
    CHECK_THROWS_WITH(parse_config(text, dir / "c.toml"), Catch::Contains("only 1 different bytes") &&
                                                              Catch::Contains("/dev/urandom"));
    std::ofstream(file, std::ios::trunc) << "abcabcabcabcabcabcabc";
    CHECK_THROWS_WITH(parse_config(text, dir / "c.toml"), Catch::Contains("only 3 different bytes"));
    std::filesystem::remove(file);
    CHECK_THROWS_WITH(parse_config(text, dir / "c.toml"), Catch::Contains("cannot read") && Catch::Contains("secret"));
    std::filesystem::remove_all(dir);
}

TEST_CASE("a client password without a cluster secret is refused, and says why") {
    const auto dir = std::filesystem::temp_directory_path() / ("dhtkit-password-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    using std::filesystem::perms;
    for (const char* name : {"password", "secret"}) {
        std::ofstream(dir / name) << "sixteen bytes or more of " << name;
        std::filesystem::permissions(dir / name, perms::owner_read | perms::owner_write);
    }
    const std::string peer = "[[peers]]\nid = 0\nhost = \"127.0.0.1\"\nport = 7400\nshared = \"s\"\ndata = \"d\"\n";
    CHECK_THROWS_WITH(parse_config("[security]\nclient_password_file = \"password\"\n" + peer, dir / "c.toml"),
                      Catch::Contains("'security.cluster_secret_file'") && Catch::Contains("pose as a node"));
    auto c = parse_config("[security]\nclient_password_file = \"password\"\ncluster_secret_file = \"secret\"\n" + peer,
                          dir / "c.toml");
    CHECK(c.client_password == "sixteen bytes or more of password");
    CHECK(c.cluster_key);
    std::filesystem::remove_all(dir);
}

TEST_CASE("every port of the file is its own on its host, and limits have ceilings") {
    auto peer = [](int id, const char* host, int port, int resp_port) {
        return fmt::format("[[peers]]\nid = {}\nhost = \"{}\"\nport = {}\n{}shared = \"s\"\ndata = \"d\"\n", id, host,
                           port, resp_port ? fmt::format("resp_port = {}\n", resp_port) : "");
    };
    // Peer 0's RESP port is peer 1's port: peer 0 would bind it first.
    CHECK_THAT(fails(peer(0, "h", 7400, 7401) + peer(1, "h", 7401, 0)),
               Catch::Contains("'peers[1].port'") && Catch::Contains("h:7401 is peers[0]'s too"));
    CHECK_THAT(fails(peer(0, "h", 7400, 0) + peer(1, "h", 7401, 7400)), Catch::Contains("'peers[1].resp_port'"));
    CHECK_THAT(fails(peer(0, "h", 7400, 6379) + peer(1, "h", 7401, 6379)), Catch::Contains("'peers[1].resp_port'"));
    CHECK_THAT(fails(peer(0, "h", 7400, 7400)), Catch::Contains("'peers[0].resp_port'"));
    CHECK(fails(peer(0, "h", 7400, 7401) + peer(1, "other", 7401, 7400)) == "no error");  // another host
    CHECK(fails(peer(0, "h", 7400, 6379) + peer(1, "h", 7401, 6380)) == "no error");

    CHECK_THAT(fails("[limits]\nmax_value_bytes = 10000000000\n" + peer(0, "h", 1, 0)),
               Catch::Contains("'limits.max_value_bytes'") && Catch::Contains("0 to 536870912"));
    CHECK(fails("[limits]\nmax_value_bytes = 536870912\n" + peer(0, "h", 1, 0)) == "no error");
    CHECK_THAT(fails("[limits]\nmax_output_bytes = 10000000000\n" + peer(0, "h", 1, 0)),
               Catch::Contains("'limits.max_output_bytes'"));
}

TEST_CASE("an unknown table or key is an error that names the nearest known one") {
    const std::string peer = "[[peers]]\nid = 0\nhost = \"127.0.0.1\"\nport = 7400\nshared = \"s\"\ndata = \"d\"\n";
    CHECK_THROWS_WITH(parse_config("[pool]\nthreds = 4\n" + peer, "/x/c.toml"),
                      Catch::Contains("/x/c.toml") && Catch::Contains("unknown key 'pool.threds'") &&
                          Catch::Contains("did you mean 'pool.threads'?"));
    CHECK_THROWS_WITH(parse_config("[replicaton]\nbackups = 1\n" + peer, "/x/c.toml"),
                      Catch::Contains("unknown table 'replicaton'") && Catch::Contains("did you mean 'replication'?"));
    CHECK_THROWS_WITH(parse_config(peer + "colour = \"blue\"\n", "/x/c.toml"),
                      Catch::Contains("unknown key 'peers[0].colour'"));
    CHECK_THROWS_WITH(parse_config("verbose = true\n" + peer, "/x/c.toml"), Catch::Contains("unknown key 'verbose'"));
    // Far from every known name: no guess.
    CHECK_THROWS_WITH(parse_config("[pool]\nzzzzzzzzzz = 1\n" + peer, "/x/c.toml"),
                      !Catch::Contains("did you mean"));
}

TEST_CASE("two peers on one host and port are an error") {
    const std::string twice = "[[peers]]\nid = 0\nhost = \"127.0.0.1\"\nport = 7400\nshared = \"a\"\ndata = \"a\"\n"
                              "[[peers]]\nid = 1\nhost = \"127.0.0.1\"\nport = 7400\nshared = \"b\"\ndata = \"b\"\n";
    CHECK_THROWS_WITH(parse_config(twice, "/x/c.toml"),
                      Catch::Contains("peers[1].port") && Catch::Contains("127.0.0.1:7400 is peers[0]'s too"));
}

TEST_CASE("[storage] and the new [limits] keys are read, and wrong values named") {
    auto c = parse_config(std::string(good) + "", "/etc/dhtkit/cluster.toml");
    CHECK_FALSE(c.storage.log);  // memory by default
    CHECK(c.limits.idle_timeout == std::chrono::seconds(30));
    auto with = [](std::string extra) {
        std::string text = good;
        text.insert(text.find("[[peers]]"), extra);
        return parse_config(text, "/etc/dhtkit/cluster.toml");
    };
    auto logged = with("[storage]\nmode = \"log\"\nfsync = \"always\"\ncompact_after_mb = 8\n");
    CHECK(logged.storage.log);
    CHECK(logged.storage.sync == fsync_rule::always);
    CHECK(logged.storage.compact_after_bytes == 8u << 20);
    auto limits = with("[storage]\nmode = \"memory\"\n");
    CHECK_FALSE(limits.storage.log);
    CHECK_THROWS_WITH(with("[storage]\nmode = \"disk\"\n"), Catch::Contains("storage.mode"));
    CHECK_THROWS_WITH(with("[storage]\nfsync = \"sometimes\"\n"), Catch::Contains("storage.fsync"));
    CHECK_THROWS_WITH(with("[storage]\nfsinc = \"always\"\n"), Catch::Contains("did you mean 'storage.fsync'"));
}

TEST_CASE("[replication] policy and [membership] are read, and wrong values named") {
    // `good` has [replication] backups = 1: more of that table goes after that line.
    auto with = [](std::string extra, std::string replication = {}) {
        std::string text = good;
        text.insert(text.find("[[peers]]"), extra);
        text.insert(text.find("backups = 1\n") + 12, replication);
        return parse_config(text, "/etc/dhtkit/cluster.toml");
    };
    auto plain = with("");
    CHECK_FALSE(plain.live_membership);
    CHECK(plain.policy == "static");
    CHECK(plain.membership.probe_interval == std::chrono::milliseconds(1000));
    CHECK(plain.membership.probe_timeout == std::chrono::milliseconds(500));
    CHECK(plain.membership.suspicion_mult == 3);
    auto live = with("[membership]\nprobe_interval_ms = 200\nsuspicion_mult = 5\nleave_on_stop = true\n",
                     "policy = \"dynamic\"\n");
    CHECK(live.live_membership);
    CHECK(live.policy == "dynamic");
    CHECK(live.membership.probe_interval == std::chrono::milliseconds(200));
    CHECK(live.membership.probe_timeout == std::chrono::milliseconds(100));  // half the interval when unset
    CHECK(live.membership.suspicion_mult == 5);
    CHECK(live.leave_on_stop);
    CHECK_THROWS_WITH(with("", "policy = \"elastic\"\n"), Catch::Contains("replication.policy"));
    CHECK_THROWS_WITH(with("", "policy = \"elastic\"\n"), Catch::Contains("\"static\" or \"dynamic\""));
    // Not capped to the seeds: members that join add room.
    std::string three = good;
    three.replace(three.find("backups = 1"), 11, "backups = 4\npolicy = \"dynamic\"");
    CHECK(parse_config(three, "/etc/dhtkit/cluster.toml").backups == 4);
    CHECK_THROWS_WITH(with("[membership]\nprobe_interval_ms = 500\nprobe_timeout_ms = 500\n"),
                      Catch::Contains("membership.probe_timeout_ms"));
    CHECK_THROWS_WITH(with("[membership]\nleave_on_stop = 1\n"), Catch::Contains("membership.leave_on_stop"));
    CHECK_THROWS_WITH(with("[membership]\nprobe_intervall_ms = 1\n"), Catch::Contains("did you mean 'membership.probe_interval_ms'"));
}

TEST_CASE("[replication] min_copies is read, defaults to 1, and is at most R + 1") {
    auto with = [](std::string replication) {
        std::string text = good;  // backups = 1, two peers
        text.insert(text.find("backups = 1\n") + 12, replication);
        return parse_config(text, "/etc/dhtkit/cluster.toml");
    };
    CHECK(with("").min_copies == 1);
    CHECK(with("min_copies = 2\n").min_copies == 2);
    CHECK_THROWS_WITH(with("min_copies = 3\n"), Catch::Contains("replication.min_copies") && Catch::Contains("1 to 2"));
    CHECK_THROWS_WITH(with("min_copies = 0\n"), Catch::Contains("replication.min_copies"));
}

TEST_CASE("a policy registry finds a policy by its name and makes a type of it") {
    using three = policy_registry<no_replication, static_backup, dynamic_backup>;
    static_assert(three::knows("dynamic") && !three::knows("elastic"));
    CHECK(three::choices() == "\"none\", \"static\" or \"dynamic\"");
    CHECK(three::follows_membership("dynamic"));
    CHECK_FALSE(three::follows_membership("static"));
    CHECK_FALSE(three::follows_membership("elastic"));
    auto copies = [](std::string_view name) {
        return three::with(name, []<class P>(std::type_identity<P>) { return P(2, consistency::available).place({{1, "h", 1}, {2, "h", 2}, {3, "h", 3}}).holders(0).size(); });
    };
    CHECK(copies("none") == 1);
    CHECK(copies("static") == 3);
    CHECK(copies("dynamic") == 3);
    std::string seen;
    three::with("static", [&]<class P>(std::type_identity<P>) { seen = P::name; });
    CHECK(seen == "static");
    CHECK(offered_policies::choices() == "\"static\" or \"dynamic\"");
}
