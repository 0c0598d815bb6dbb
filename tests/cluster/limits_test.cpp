// Clients that cannot hurt each other, on real processes: a client that pipelines large reads and
// never reads the replies slows no one else and holds bounded memory; a slow reader gets a large
// file whole; connections that stall halfway through a request are closed after the idle timeout
// and their memory is returned.

#include <catch2/catch.hpp>

#include "local_cluster.hpp"
#include "raw_session.hpp"

#include <algorithm>
#include <array>
#include <fstream>
#include <span>
#include <string_view>
#include <thread>
#include <vector>

#include <dhtkit/peer/shared_folder.hpp>

using namespace dhtkit;
using namespace dhtkit::protocol;
using namespace std::chrono_literals;

namespace {

// The resident memory of process `pid`, in KiB (0 when it cannot be read).
std::size_t rss_kib(pid_t pid) {
    std::ifstream in(fmt::format("/proc/{}/status", pid));
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::stoul(line.substr(6));
    return 0;
}

// Sanitizer allocators keep freed memory (ASan's quarantine) and shadow it: a process's resident
// size then says nothing about what the peer gave back.
constexpr bool plain_allocator =
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    false;
#else
    true;
#endif

// One ping's round trip on a fresh connection's session.
std::chrono::microseconds ping_time(test::raw_session& s, std::uint64_t id) {
    const auto start = std::chrono::steady_clock::now();
    s.send(test::frame(opcode::ping, id, {}));
    auto got = s.read(1);
    REQUIRE(got.size() == 1);
    return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start);
}

}  // namespace

TEST_CASE("clients that pipeline large reads and never read slow no one else, in bounded memory") {
    const auto dispatch = GENERATE(std::string("loop"), std::string("pool"));
    INFO("dispatch " << dispatch);
    test::local_cluster cluster({.peers = 1, .pool_threads = 2, .dispatch = dispatch, .backups = 0});
    cluster.start_all();
    auto c = cluster.client(2000ms);
    REQUIRE(c.put("big", std::string(1 << 20, 'x')).ok());
    const std::size_t before = rss_kib(cluster.pid(0));

    // Four connections ask for the 1 MiB value 256 times each (1 GiB of replies) and read nothing.
    std::vector<test::raw_session> greedy;
    std::string asks;
    for (std::uint64_t i = 0; i < 256; ++i) asks += test::frame(opcode::get, i, "big");
    for (int i = 0; i < 4; ++i) {
        greedy.push_back({test::raw_connect(cluster, 0)});
        greedy.back().send(asks);
    }
    // Until the peer has stopped reading them: its replies fill what the sockets hold.
    REQUIRE(test::eventually([&] { return test::stat_count(c, 0, "op_get") >= 4 * 3; }));

    // Others are served at once, on every worker (connections go to the workers in turn).
    std::vector<std::chrono::microseconds> times;
    for (int conn = 0; conn < 4; ++conn) {
        test::raw_session s{test::raw_connect(cluster, 0)};
        for (std::uint64_t i = 0; i < 10; ++i) times.push_back(ping_time(s, i));
    }
    std::sort(times.begin(), times.end());
    INFO("ping median " << times[times.size() / 2].count() << " us, slowest " << times.back().count() << " us");
    CHECK(times[times.size() * 9 / 10] < 50ms);
    CHECK(times.back() < 1s);

    // The peer holds about max_output_bytes and a reply per greedy client, not the gigabyte.
    const std::size_t during = rss_kib(cluster.pid(0));
    INFO("resident before " << before << " KiB, during " << during << " KiB");
    if (plain_allocator) CHECK(during < before + 4 * 4 * 1024 + 32 * 1024);
    const auto answered = test::stat_count(c, 0, "op_get");
    CHECK(answered < 4 * 64);  // it stopped reading them long before the end

    // A greedy client that starts reading gets every reply, whole and in order.
    auto& g = greedy.front();
    for (std::uint64_t i = 0; i < 256; i += 32) {
        auto got = g.read(32);
        REQUIRE(got.size() == 32);
        for (std::size_t k = 0; k < got.size(); ++k) {
            CHECK(got[k].first.request_id == i + k);
            CHECK(got[k].second.size() == 1u << 20);
        }
    }
}

TEST_CASE("a slow reader gets a large file whole, however long it takes") {
    test::local_cluster cluster({.peers = 1, .idle_timeout_s = 2, .backups = 0});
    constexpr std::size_t size = 100u << 20;
    {
        std::ofstream out(cluster.dir() / "peer0/shared/large.bin", std::ios::binary);
        std::string block(1 << 20, '\0');
        for (std::size_t i = 0; i < size / block.size(); ++i) {
            for (std::size_t k = 0; k < block.size(); k += 4096) block[k] = static_cast<char>(i + k / 4096);
            out.write(block.data(), static_cast<std::streamsize>(block.size()));
        }
    }
    cluster.start_all();
    auto c = cluster.client(2000ms);
    REQUIRE(test::eventually([&] { return c.search("large.bin").first.ok(); }, 30s));

    // Reads at 3 MB/s: about 35 s for the whole file, far past any time limit on a transfer, and
    // with pauses longer than nothing-moved would be for a fast reader.
    constexpr double bytes_per_s = 3e6;
    const auto start = std::chrono::steady_clock::now();
    auto dest = cluster.dir() / "large.copy";
    auto got = c.obtain("large.bin", dest, [&](std::uint64_t received, std::uint64_t) {
        const auto due = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                     std::chrono::duration<double>(static_cast<double>(received) / bytes_per_s));
        std::this_thread::sleep_until(due);  // the pace of a slow reader, not a wait for an event
    });
    INFO(got.error);
    REQUIRE(got.ok());
    CHECK(got.size == size);
    CHECK(std::filesystem::file_size(dest) == size);
    CHECK(test::stat_value(c, 0, "connections_timed_out") == "0");
}

TEST_CASE("connections that stall halfway through a request are closed after the idle timeout") {
    test::local_cluster cluster({.peers = 1, .idle_timeout_s = 1, .backups = 0});
    cluster.start_all();
    auto c = cluster.client(2000ms);
    REQUIRE(c.put("still", "served").ok());
    test::raw_session idle{test::raw_connect(cluster, 0)};  // between requests all along: stays open
    idle.send(test::frame(opcode::ping, 1, {}));
    REQUIRE(idle.read(1).size() == 1);
    const std::size_t before = rss_kib(cluster.pid(0));

    // 500 connections, each with half of a 1 MiB put and then silence.
    constexpr int count = 500;
    std::string half;
    append_frame(half, {opcode::put, 0, status::ok, 1, 0, 0}, "k", std::string(1 << 20, 'v'));
    half.resize(half.size() / 2);
    std::vector<test::raw_session> stalled;
    for (int i = 0; i < count; ++i) {
        stalled.push_back({test::raw_connect(cluster, 0)});
        stalled.back().send(half);
    }
    // Every one reached the peer (under a sanitizer the first may already have timed out by the
    // time the last is sent).
    REQUIRE(test::eventually([&] {
        return test::stat_count(c, 0, "connections_open") + test::stat_count(c, 0, "connections_timed_out") >= count;
    }));
    const std::size_t during = rss_kib(cluster.pid(0));

    // Closed by the peer once a second or so has passed without a byte.
    REQUIRE(test::eventually([&] { return test::stat_value(c, 0, "connections_timed_out") == std::to_string(count); },
                             30s));
    for (auto& s : stalled) CHECK(s.sees_close());
    stalled.clear();
    REQUIRE(test::eventually([&] { return test::stat_value(c, 0, "connections_open") == "2"; }));  // c's and idle

    // The memory they held is given back (by the sweep after the one that ended them).
    std::size_t after = 0;
    const bool returned = test::eventually([&] { return (after = rss_kib(cluster.pid(0))) < before * 12 / 10; }, 5s);
    INFO("resident before " << before << " KiB, with the stalled " << during << " KiB, after " << after << " KiB");
    if (plain_allocator) CHECK(returned);
    // Other clients were served all along, and the idle connection is still open.
    CHECK(c.get("still").value == "served");
    idle.send(test::frame(opcode::ping, 2, {}));
    REQUIRE(idle.read(1).size() == 1);
}

TEST_CASE("RESP connections that stall halfway through a command are closed after the idle timeout too") {
    test::local_cluster cluster({.peers = 1, .idle_timeout_s = 1, .backups = 0, .resp = true});
    cluster.start_all();
    auto c = cluster.client(2000ms);
    auto resp_connect = [&] {
        return net::tcp_stream::connect(net::endpoint::parse(fmt::format("127.0.0.1:{}", cluster.resp_port(0))), 2s);
    };
    auto send = [](net::tcp_stream& s, std::string_view bytes) { REQUIRE(s.send_all(std::as_bytes(std::span(bytes)), 2s).ok()); };
    auto pong = [](net::tcp_stream& s) {
        std::array<std::byte, 7> got;
        return s.receive_all(got, 5s).ok() && std::string_view(reinterpret_cast<const char*>(got.data()), got.size()) == "+PONG\r\n";
    };
    auto idle = resp_connect();  // between commands all along: stays open
    send(idle, "PING\r\n");
    REQUIRE(pong(idle));

    // Each sends a SET whose 1 MiB value stops halfway, then nothing; one more stops inside a
    // bulk's length line.
    constexpr int count = 20;
    const std::string half = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1048576\r\n" + std::string(1 << 19, 'v');
    std::vector<net::tcp_stream> stalled;
    for (int i = 0; i < count; ++i) {
        stalled.push_back(resp_connect());
        send(stalled.back(), i == 0 ? std::string_view("*3\r\n$3\r\nSET\r\n$10") : std::string_view(half));
    }
    REQUIRE(test::eventually([&] { return test::stat_count(c, 0, "connections_timed_out") == count; }, 30s));
    for (auto& s : stalled) {
        std::byte b;
        CHECK(s.receive_all({&b, 1}, 5s).status == net::io_status::closed);
    }
    send(idle, "PING\r\n");
    CHECK(pong(idle));
}
