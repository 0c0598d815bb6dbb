// The peer's lifecycle with real processes: the supervisor restarting a killed worker (which
// catches up from its replicas), a crash loop ending, daemon start / stop / stale pid file /
// second start, and SIGTERM under load answering what it took and closing cleanly.

#include <catch2/catch.hpp>

#include "local_cluster.hpp"

#include <dhtkit/app/daemon.hpp>

#include <atomic>
#include <fstream>
#include <iterator>
#include <thread>

using namespace dhtkit;
using namespace dhtkit::protocol;
using namespace std::chrono_literals;

namespace {

using test::eventually;
using test::stat_value;

// Running, as opposed to gone or a zombie waiting for whoever adopted it to reap it.
bool running(pid_t pid) {
    std::ifstream in(fmt::format("/proc/{}/stat", pid));
    std::string id, comm, state;
    if (!(in >> id >> comm >> state)) return false;
    return state != "Z" && state != "X";
}

struct program_result {
    int status = -1;  // the exit status, or -1
    std::string output;  // stdout and stderr
};

// Runs dhtkit-peer with `args` and waits (up to 30 s) for it to exit, collecting its output.
program_result run_peer_program(const std::vector<std::string>& args) {
    int out[2];
    REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
    std::vector<const char*> argv{DHTKIT_PEER_BINARY};
    for (const auto& a : args) argv.push_back(a.c_str());
    argv.push_back(nullptr);
    pid_t pid = ::fork();
    if (pid == 0) {
        ::dup2(out[1], 1);
        ::dup2(out[1], 2);
        ::execv(DHTKIT_PEER_BINARY, const_cast<char* const*>(argv.data()));
        ::_exit(127);
    }
    ::close(out[1]);
    program_result r;
    char buf[512];
    for (;;) {
        pollfd p{out[0], POLLIN, 0};
        if (::poll(&p, 1, 30000) <= 0) break;
        auto n = ::read(out[0], buf, sizeof buf);
        if (n <= 0) break;
        r.output.append(buf, static_cast<std::size_t>(n));
    }
    ::close(out[0]);
    int status = 0;
    if (::waitpid(pid, &status, 0) == pid && WIFEXITED(status)) r.status = WEXITSTATUS(status);
    return r;
}

// Stops the daemon of a pid file when the test ends, however it ends.
struct daemon_guard {
    std::filesystem::path pid_file;
    ~daemon_guard() {
        try {
            if (dhtkit::pid_file::held(pid_file)) dhtkit::stop_daemon(pid_file, 10s);
        } catch (const std::exception&) {
        }
    }
};

}  // namespace

TEST_CASE("kill -9 of a worker: the supervisor starts a new one, which catches up from its replicas") {
    test::local_cluster cluster({.supervised = true});
    cluster.start_all();
    // Long enough for a holder that is busy catching up under a sanitizer.
    auto c = cluster.client(3000ms);
    for (int i = 0; i < 200; ++i) REQUIRE(c.put(fmt::format("key-{}", i), fmt::format("v{}", i)).ok());
    const int victim = 1;
    CHECK(stat_value(c, victim, "restarts") == "0");
    CHECK(stat_value(c, victim, "last_restart") == "never");
    const auto worker = std::stoi(stat_value(c, victim, "pid"));
    REQUIRE(worker != cluster.pid(victim));  // the worker is not the supervisor

    REQUIRE(::kill(worker, SIGKILL) == 0);
    // Meanwhile the others serve its keys, and take writes for them.
    for (int i = 0; i < 200; i += 2) {
        auto r = c.put(fmt::format("key-{}", i), fmt::format("w{}", i));
        INFO("key-" << i << ": " << r.error);
        REQUIRE(r.ok());
    }
    // Up (a new pid answers stats), then caught up (it answers reads instead of `unavailable`).
    REQUIRE(eventually([&] {
        auto pid = stat_value(c, victim, "pid");
        return !pid.empty() && std::stoi(pid) != worker &&
               c.call(victim, opcode::get, "key-0").code != status::unavailable;
    }));
    CHECK(stat_value(c, victim, "restarts") == "1");
    CHECK(stat_value(c, victim, "last_restart") != "never");
    for (int i = 0; i < 200; ++i) {
        auto key = fmt::format("key-{}", i);
        auto holders = c.holders(key);
        if (std::find(holders.begin(), holders.end(), std::size_t{victim}) == holders.end()) continue;
        auto e = test::own_copy(c, victim, key);  // the new worker's own table
        REQUIRE(e);
        CHECK(e->value == fmt::format("{}{}", i % 2 == 0 ? 'w' : 'v', i));
    }
}

TEST_CASE("a real peer's crash loop ends with its supervisor giving up and saying why") {
    test::local_cluster cluster({.peers = 1, .supervised = true, .max_restarts = 2});
    cluster.start(0);
    auto c = cluster.client(800ms);
    std::string last = stat_value(c, 0, "pid");
    for (int kill = 0; kill < 3; ++kill) {
        REQUIRE_FALSE(last.empty());
        REQUIRE(::kill(std::stoi(last), SIGKILL) == 0);
        if (kill == 2) break;
        REQUIRE(eventually([&] {
            auto pid = stat_value(c, 0, "pid");
            if (pid.empty() || pid == last) return false;
            last = pid;
            return true;
        }));
    }
    int status = -1;
    auto said = cluster.wait_exit(0, 10s, status);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 1);
    CHECK_THAT(said, Catch::Contains("giving up") && Catch::Contains("restarted 2 times") &&
                         Catch::Contains("killed by signal 9"));
}

TEST_CASE("daemon mode: start, refuse a second start, stop, and take over a stale pid file") {
    test::local_cluster cluster({.peers = 1});
    const auto cfg = cluster.config_file().string();
    const auto pid_path = cluster.dir() / "peer0" / "data" / "dhtkit-peer-0.pid";
    daemon_guard guard{pid_path};

    auto started = run_peer_program({"--config", cfg, "--id", "0", "--daemon"});
    INFO(started.output);
    REQUIRE(started.status == 0);
    CHECK_THAT(started.output, Catch::Contains("serving on"));
    // The parent returned only once the peer accepts connections: no waiting here.
    auto c = cluster.client(800ms);
    CHECK(c.call(0, opcode::ping, {}).ok());
    REQUIRE(pid_file::held(pid_path));
    auto pid = pid_file::read_pid(pid_path);
    REQUIRE(pid);
    CHECK(running(*pid));
    CHECK(std::filesystem::exists(cluster.dir() / "peer0" / "data" / "dhtkit-peer-0.log"));

    auto second = run_peer_program({"--config", cfg, "--id", "0", "--daemon"});
    CHECK(second.status == 1);
    CHECK_THAT(second.output, Catch::Contains("already running") && Catch::Contains(std::to_string(*pid)));

    auto stopped = run_peer_program({"--config", cfg, "--id", "0", "--stop"});
    INFO(stopped.output);
    CHECK(stopped.status == 0);
    CHECK_FALSE(running(*pid));  // gone, not just signalled
    CHECK_FALSE(std::filesystem::exists(pid_path));
    CHECK_FALSE(c.call(0, opcode::ping, {}).ok());

    auto again = run_peer_program({"--config", cfg, "--id", "0", "--stop"});
    CHECK(again.status == 1);
    CHECK_THAT(again.output, Catch::Contains("not running"));

    // A pid file left by a process that died: not held, so it is taken over.
    std::ofstream(pid_path) << "999999\n";
    auto over_stale = run_peer_program({"--config", cfg, "--id", "0", "--daemon"});
    INFO(over_stale.output);
    CHECK(over_stale.status == 0);
    CHECK(c.call(0, opcode::ping, {}).ok());
    CHECK(run_peer_program({"--config", cfg, "--id", "0", "--stop"}).status == 0);
}

TEST_CASE("a daemon that cannot start says why, and its parent returns non-zero") {
    test::local_cluster cluster({.peers = 1});
    // Someone else holds the peer's port.
    auto squatter = net::tcp_listener::bind(net::endpoint::parse(fmt::format("127.0.0.1:{}", cluster.port(0))));
    const auto pid_path = cluster.dir() / "peer0" / "data" / "dhtkit-peer-0.pid";
    auto r = run_peer_program({"--config", cluster.config_file().string(), "--id", "0", "--daemon"});
    INFO(r.output);
    CHECK(r.status == 1);
    CHECK_THAT(r.output, Catch::Contains("error") && Catch::Contains(std::to_string(cluster.port(0))));
    // The supervisor does not restart a worker that cannot start: the daemon is gone.
    CHECK(eventually([&] { return !pid_file::held(pid_path); }));
}

TEST_CASE("SIGTERM during a load answers what it took, loses no acknowledged write, and closes cleanly") {
    test::local_cluster cluster({.dispatch = GENERATE(as<std::string>{}, "pool", "loop")});
    cluster.start_all();
    auto c = cluster.client(800ms);
    const int victim = 0;
    std::atomic<bool> go{true};
    std::atomic<int> acked{0}, resets{0}, partial{0}, wrong_close{0};
    std::vector<std::vector<std::string>> written(4);
    std::vector<std::thread> clients;
    for (int t = 0; t < 4; ++t)
        clients.emplace_back([&, t] {
            auto s = test::raw_connect(cluster, victim);
            frame_reader reader({1024, 1 << 20});
            std::uint64_t id = 0;
            std::vector<std::string> pending;  // sent, not yet answered, in order
            for (;;) {
                // Four requests in flight, so that some are always buffered when the stop comes.
                while (go && pending.size() < 4) {
                    auto key = fmt::format("t{}-{}", t, id);
                    std::string f;
                    append_frame(f, {opcode::put, 0, status::ok, ++id, 0, 0}, key, key);
                    if (!s.send_all(std::as_bytes(std::span(f)), 2s)) break;
                    pending.push_back(key);
                }
                frame_view fv;
                auto got = reader.next(fv);
                if (got == frame_reader::result::frame) {
                    if (fv.h.code == status::ok) {
                        written[static_cast<std::size_t>(t)].push_back(pending.front());
                        ++acked;
                    }
                    pending.erase(pending.begin());
                    continue;
                }
                if (!s.wait_readable(5s)) {
                    ++wrong_close;  // neither a reply nor a close
                    return;
                }
                auto in = s.receive_some(reader.prepare(65536));
                if (in.status == net::io_status::closed) {
                    if (in.error == ECONNRESET) ++resets;
                    if (reader.buffered() != 0) ++partial;  // a reply cut short
                    return;
                }
                if (!in) {
                    ++wrong_close;
                    return;
                }
                reader.commit(in.bytes);
            }
        });
    REQUIRE(eventually([&] { return acked > 2000; }));
    REQUIRE(cluster.stop(victim) == 0);  // SIGTERM; exit status 0
    go = false;
    for (auto& t : clients) t.join();
    CHECK(resets == 0);
    CHECK(partial == 0);
    CHECK(wrong_close == 0);
    // Every acknowledged write is on the peers that remain, read from each one's own table (a
    // client's read may meet them still catching up on the stopped peer's slots, and answer
    // "ask the next holder").
    for (const auto& keys : written)
        for (std::size_t i = 0; i < keys.size(); i += 7)
            for (std::size_t holder : {1, 2}) {
                auto own = test::own_copy(c, holder, keys[i]);
                REQUIRE(own);
                CHECK(own->value == keys[i]);
            }
}

TEST_CASE("the log says each line's level once, the library's lines under its own name, and --log-level filters") {
    test::local_cluster cluster({.peers = 1});  // no secret: the peer warns that the cluster is open
    const auto cfg = cluster.config_file().string();
    const auto data = cluster.dir() / "peer0" / "data";
    const auto pid_path = data / "dhtkit-peer-0.pid";
    const auto log_path = data / "dhtkit-peer-0.log";
    auto read_log = [&] {
        std::ifstream in(log_path);
        return std::string(std::istreambuf_iterator<char>(in), {});
    };
    {
        daemon_guard guard{pid_path};
        auto started = run_peer_program({"--config", cfg, "--id", "0", "--daemon"});
        INFO(started.output);
        REQUIRE(started.status == 0);
        REQUIRE(eventually([&] { return read_log().find("serving on") != std::string::npos; }));
        const auto text = read_log();
        INFO(text);
        CHECK_THAT(text, Catch::Contains("info: serving on") && Catch::Contains("warning: dhtkit: the cluster is open") &&
                             !Catch::Contains("warning: warning") && !Catch::Contains("warning: dhtkit: caught up"));
    }
    std::filesystem::remove(log_path);
    {
        daemon_guard guard{pid_path};
        auto started = run_peer_program({"--config", cfg, "--id", "0", "--daemon", "--log-level", "warning"});
        INFO(started.output);
        REQUIRE(started.status == 0);
        REQUIRE(eventually([&] { return read_log().find("the cluster is open") != std::string::npos; }));
        CHECK_THAT(read_log(), !Catch::Contains("info:"));
    }
    auto refused = run_peer_program({"--config", cfg, "--id", "0", "--log-level", "loud"});
    CHECK(refused.status == 2);
    CHECK_THAT(refused.output, Catch::Contains("--log-level"));
}
