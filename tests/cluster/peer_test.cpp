// Real dhtkit-peer processes on loopback ports.

#include <catch2/catch.hpp>

#include "local_cluster.hpp"
#include "raw_session.hpp"
#include <dhtkit/protocol/codec.hpp>

#include <sys/wait.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <random>
#include <string>
#include <thread>

using namespace dhtkit;
using namespace dhtkit::protocol;
using namespace std::chrono_literals;
using test::frame;
using test::raw_session;
namespace {

std::string read_file(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const std::filesystem::path& p, std::size_t size, unsigned seed) {
    std::string data(size, '\0');
    std::mt19937_64 rng(seed);
    for (std::size_t i = 0; i + 8 <= size; i += 8) {
        auto x = rng();
        std::memcpy(data.data() + i, &x, 8);
    }
    std::ofstream(p, std::ios::binary) << data;
}

}  // namespace

TEST_CASE("every operation works across a three-peer cluster, under both dispatch models") {
    // No backups: a withdrawn file must leave no holder (replicated copies are tested on their own).
    test::local_cluster cluster({.dispatch = GENERATE(as<std::string>{}, "pool", "loop"), .backups = 0});
    write_file(cluster.shared(1) / "at-start.bin", 100000, 1);
    cluster.start_all();
    auto c = cluster.client();

    std::vector<int> homes(3);
    for (int i = 0; i < 60; ++i) {
        auto key = "key-" + std::to_string(i);
        REQUIRE(c.put(key, "value-" + std::to_string(i)).ok());
        homes[c.home_of(key)]++;
    }
    CHECK(homes[0] > 0);
    CHECK(homes[1] > 0);
    CHECK(homes[2] > 0);
    for (int i = 0; i < 60; ++i) CHECK(c.get("key-" + std::to_string(i)).value == "value-" + std::to_string(i));
    CHECK(c.del("key-7").ok());
    CHECK(c.get("key-7").code == status::not_found);
    CHECK(c.del("key-7").code == status::not_found);

    for (std::size_t i = 0; i < 3; ++i) {
        auto r = c.call(i, opcode::ping, {});
        CHECK(r.ok());
        CHECK(r.value == "peer " + std::to_string(i));
    }
    auto stats = c.call(c.home_of("key-1"), opcode::stats, {});
    CHECK_THAT(stats.value, Catch::Contains("op_put=") && Catch::Contains("keys=") && Catch::Contains("uptime_s="));

    // A file in a shared folder at start is registered by its peer; obtain verifies it.
    std::pair<reply, std::vector<holder>> found;
    for (int i = 0; i < 100; ++i) {  // the peer registers in the background, just after it starts
        found = c.search("at-start.bin");
        if (found.first.ok()) break;
        std::this_thread::sleep_for(20ms);
    }
    REQUIRE(found.first.ok());
    REQUIRE(found.second.size() == 1);
    CHECK(found.second[0].peer_id == 1);
    CHECK(found.second[0].size == 100000);
    auto dest = cluster.dir() / "got.bin";
    auto got = c.obtain("at-start.bin", dest);
    REQUIRE(got.ok());
    CHECK(read_file(dest) == read_file(cluster.shared(1) / "at-start.bin"));

    // register / unregister carried out by a peer for its own folder.
    write_file(cluster.shared(2) / "later.txt", 1234, 2);
    CHECK(c.call(2, opcode::announce, "later.txt").ok());
    CHECK(c.search("later.txt").second.size() == 1);
    CHECK(c.call(2, opcode::announce, "missing.txt").code == status::not_found);
    CHECK(c.call(2, opcode::withdraw, "later.txt").ok());
    CHECK(c.search("later.txt").first.code == status::not_found);
    CHECK(c.obtain("later.txt", cluster.dir() / "x").code == status::not_found);
}

TEST_CASE("many clients at once each see their own writes") {
    test::local_cluster cluster({.dispatch = GENERATE(as<std::string>{}, "pool", "loop")});
    cluster.start_all();
    // A read right after an acknowledged write answers it, or says it cannot (an error), never an
    // older state. Errors are counted and shown, not failed on: under a sanitizer on a loaded
    // machine a request may time out.
    std::atomic<int> seen{0}, stale{0}, errors{0};
    std::mutex mutex;
    std::string first_stale, first_error;
    std::vector<std::thread> clients;
    for (int t = 0; t < 8; ++t)
        clients.emplace_back([&, t] {
            auto c = cluster.client();
            for (int i = 0; i < 300; ++i) {
                auto key = fmt::format("c{}-k{}", t, i);
                auto put = c.put(key, key + "!");
                if (!put.ok()) {
                    std::lock_guard lock(mutex);
                    if (errors++ == 0) first_error = fmt::format("put {}: {} {}", key, static_cast<int>(put.code), put.value);
                    continue;
                }
                auto got = c.get(key);
                if (got.ok() && got.value == key + "!") {
                    ++seen;
                } else if (got.ok() || got.code == status::not_found) {
                    std::lock_guard lock(mutex);
                    if (stale++ == 0) first_stale = fmt::format("get {}: {}", key, got.ok() ? got.value : "not found");
                } else {
                    std::lock_guard lock(mutex);
                    if (errors++ == 0) first_error = fmt::format("get {}: {} {}", key, static_cast<int>(got.code), got.value);
                }
            }
        });
    for (auto& t : clients) t.join();
    INFO(errors.load() << " errors, the first: " << first_error);
    INFO(stale.load() << " stale reads, the first: " << first_stale);
    CHECK(stale.load() == 0);
    CHECK(seen.load() > 8 * 300 / 2);
    if (errors.load() > 0) WARN(errors.load() << " requests answered with an error, the first: " << first_error);
}

TEST_CASE("pipelined requests on one connection are all answered, in order, with their ids") {
    test::local_cluster cluster({.peers = 1, .dispatch = GENERATE(as<std::string>{}, "pool", "loop")});
    cluster.start_all();
    raw_session s{test::raw_connect(cluster, 0)};
    std::string batch;
    // fmt rather than "k" + std::to_string(i): g++ 12 at -O3 warns falsely (-Wrestrict) on the latter.
    for (int i = 0; i < 500; ++i)
        batch += frame(opcode::put, 1000 + static_cast<unsigned>(i), fmt::format("k{}", i), fmt::format("v{}", i));
    for (int i = 0; i < 500; ++i) batch += frame(opcode::get, 2000 + static_cast<unsigned>(i), fmt::format("k{}", i));
    s.send(batch);
    auto replies = s.read(1000);
    REQUIRE(replies.size() == 1000);
    bool in_order = true;
    for (int i = 0; i < 500; ++i) {
        in_order &= replies[static_cast<std::size_t>(i)].first.request_id == 1000u + static_cast<unsigned>(i);
        auto& g = replies[500 + static_cast<std::size_t>(i)];
        in_order &= g.first.request_id == 2000u + static_cast<unsigned>(i) && g.second == fmt::format("v{}", i);
    }
    CHECK(in_order);
}

TEST_CASE("bad input gets an error for it, nothing is lost and other clients are unaffected") {
    test::local_cluster cluster({.peers = 1, .pool_threads = 2, .max_key_bytes = 64, .max_value_bytes = 4096,
                                 .dispatch = GENERATE(as<std::string>{}, "pool", "loop")});
    cluster.start_all();
    auto c = cluster.client();
    REQUIRE(c.put("kept", "safe").ok());

    SECTION("garbage bytes: bad request, then the connection is closed") {
        raw_session s{test::raw_connect(cluster, 0)};
        s.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        auto r = s.read(1);
        REQUIRE(r.size() == 1);
        CHECK(r[0].first.code == status::bad_request);
        CHECK_THAT(r[0].second, Catch::Contains("magic"));
        CHECK(s.sees_close());
    }
    SECTION("an oversized length: too large, closed, and no waiting for the promised bytes") {
        raw_session s{test::raw_connect(cluster, 0)};
        std::array<std::byte, header_size> head;
        encode({opcode::put, 0, status::ok, 9, 10, 1u << 30}, head);
        s.send(std::string_view(reinterpret_cast<const char*>(head.data()), head.size()));
        auto r = s.read(1);
        REQUIRE(r.size() == 1);
        CHECK(r[0].first.code == status::too_large);
        CHECK(r[0].first.request_id == 9);
        CHECK(s.sees_close());
    }
    SECTION("a whole frame with an empty key or a value over the limit: the reason, and the connection stays open") {
        raw_session s{test::raw_connect(cluster, 0)};
        s.send(frame(opcode::put, 1, "", "v") + frame(opcode::put, 2, "kept", std::string(4097, 'x')) +
               frame(opcode::get, 3, "kept") + frame(opcode::get, 4, "") + frame(opcode::del, 5, ""));
        auto r = s.read(5);
        REQUIRE(r.size() == 5);
        CHECK(r[0].first.code == status::bad_request);
        CHECK(r[0].second == "the key is empty");
        CHECK(r[1].first.code == status::too_large);
        CHECK(r[1].second == "the value is 4097 bytes; this peer's limit is 4096");
        CHECK(r[2].second == "safe");
        for (std::size_t i : {3, 4}) {  // reads and deletes as puts: docs/protocol.md
            CHECK(r[i].first.code == status::bad_request);
            CHECK(r[i].second == "the key is empty");
        }
    }
    SECTION("an unknown opcode: answered as such, and the connection stays usable") {
        raw_session s{test::raw_connect(cluster, 0)};
        std::string bytes = frame(opcode::ping, 5, "");
        bytes[3] = static_cast<char>(200);
        s.send(bytes + frame(opcode::get, 6, "kept"));
        auto r = s.read(2);
        REQUIRE(r.size() == 2);
        CHECK(r[0].first.code == status::unknown_opcode);
        CHECK(r[1].first.code == status::ok);
        CHECK(r[1].second == "safe");
    }
    SECTION("a truncated frame from a client that then vanishes") {
        {
            raw_session s{test::raw_connect(cluster, 0)};
            s.send(frame(opcode::put, 1, "kept", "overwritten?").substr(0, 30));
        }
        CHECK(c.get("kept").value == "safe");
    }
    SECTION("a half frame left hanging does not hold up anyone else") {
        raw_session s{test::raw_connect(cluster, 0)};
        s.send(frame(opcode::put, 1, "kept", "overwritten?").substr(0, 10));
        for (int i = 0; i < 50; ++i) REQUIRE(c.get("kept").value == "safe");
    }
    CHECK(c.get("kept").value == "safe");
    CHECK(c.put("after", "fine").ok());
    auto stats = c.call(0, opcode::stats, {});
    CHECK(stats.ok());
}

TEST_CASE("the client refuses keys and values over the limits before sending") {
    test::local_cluster cluster({.peers = 1, .pool_threads = 1, .max_key_bytes = 8, .max_value_bytes = 16});
    cluster.start_all();
    auto c = cluster.client();
    CHECK(c.put("123456789", "v").code == status::too_large);
    CHECK(c.put("k", std::string(17, 'v')).code == status::too_large);
    CHECK(c.put("k", std::string(16, 'v')).ok());
}

TEST_CASE("obtain refuses names outside the shared folder and leaves nothing at DEST") {
    test::local_cluster cluster({.peers = 2});
    std::ofstream(cluster.dir() / "secret.txt") << "not shared";
    std::filesystem::create_symlink(cluster.dir() / "secret.txt", cluster.shared(0) / "link.txt");
    cluster.start_all();
    for (std::string name : {"../secret.txt", "/etc/passwd", "..", "link.txt", "sub/../../secret.txt"}) {
        raw_session s{test::raw_connect(cluster, 0)};
        s.send(frame(opcode::fetch, 1, name));
        auto r = s.read(1);
        REQUIRE(r.size() == 1);
        CHECK((r[0].first.code == status::refused || r[0].first.code == status::not_found));
        CHECK(r[0].second.find("not shared") == std::string::npos);
    }
    // Register through the registry by hand, pointing at the traversal name: the holder refuses.
    auto c = cluster.client();
    holder fake{0, "127.0.0.1", cluster.port(0), 10, 0};
    REQUIRE(c.register_holder("../secret.txt", fake).ok());
    auto dest = cluster.dir() / "out.txt";
    auto got = c.obtain("../secret.txt", dest);
    CHECK_FALSE(got.ok());
    CHECK_FALSE(std::filesystem::exists(dest));
}

TEST_CASE("a holder killed mid-download: obtain finishes from another holder, or fails leaving no partial file") {
    test::local_cluster cluster({.backups = 0});  // only the holders the test makes
    const std::size_t size = 96u << 20;
    write_file(cluster.shared(1) / "big.bin", size, 3);
    std::filesystem::copy_file(cluster.shared(1) / "big.bin", cluster.shared(2) / "big.bin");
    cluster.start(0);
    cluster.start(1);  // registers first, so it is the first holder listed
    auto c = cluster.client();
    auto holders = [&] { return c.search("big.bin").second.size(); };
    for (int i = 0; i < 200 && holders() < 1; ++i) std::this_thread::sleep_for(10ms);
    cluster.start(2);
    for (int i = 0; i < 200 && holders() < 2; ++i) std::this_thread::sleep_for(10ms);
    REQUIRE(holders() == 2);

    auto dest = cluster.dir() / "big.copy";
    bool killed = false;
    auto result = c.obtain("big.bin", dest, [&](std::uint64_t done, std::uint64_t) {
        if (!killed && done > 0) {
            killed = true;
            cluster.kill(1);
        }
    });
    CHECK(killed);
    REQUIRE(result.ok());
    CHECK(result.from_peer == 2);
    CHECK(std::filesystem::file_size(dest) == size);
    CHECK(read_file(dest) == read_file(cluster.shared(2) / "big.bin"));

    // With the last holder gone too, obtain fails cleanly: no file, no leftover part.
    auto dest2 = cluster.dir() / "big.second";
    bool killed2 = false;
    auto second = c.obtain("big.bin", dest2, [&](std::uint64_t done, std::uint64_t) {
        if (!killed2 && done > 0) {
            killed2 = true;
            cluster.kill(2);
        }
    });
    CHECK_FALSE(second.ok());
    CHECK_FALSE(std::filesystem::exists(dest2));
    for (const auto& e : std::filesystem::directory_iterator(cluster.dir()))
        CHECK(e.path().filename().string().find(".part-") == std::string::npos);
}

TEST_CASE("a peer stops cleanly on SIGTERM") {
    test::local_cluster cluster({.peers = 1});
    cluster.start_all();
    auto c = cluster.client();
    REQUIRE(c.put("k", "v").ok());
    int status = cluster.stop(0);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("a client that never reads its replies holds up no one else on its worker, under both dispatch models") {
    test::local_cluster cluster({.peers = 1, .pool_threads = 1, .dispatch = GENERATE(as<std::string>{}, "pool", "loop"),
                                 .backups = 0});
    cluster.start_all();
    auto c = cluster.client(2s);
    REQUIRE(c.put("big", std::string(512 * 1024, 'b')).ok());
    REQUIRE(c.put("small", "s").ok());
    // 200 gets of 512 KiB: 100 MiB of replies that this client never reads, so the socket fills.
    auto greedy = test::raw_connect(cluster, 0);
    std::string asks;
    for (std::uint64_t i = 1; i <= 200; ++i) asks += frame(opcode::get, i, "big");
    REQUIRE(greedy.send_all(std::as_bytes(std::span(asks)), 2s).ok());
    // The one worker still answers everyone else at once (it used to wait up to 10 s on the socket).
    for (int i = 0; i < 20; ++i) {
        auto r = c.get("small");
        REQUIRE(r.ok());
        CHECK(r.value == "s");
    }
    // And the greedy client gets every reply, in order, once it reads.
    raw_session s{std::move(greedy)};
    auto got = s.read(200);
    REQUIRE(got.size() == 200);
    for (std::uint64_t i = 0; i < 200; ++i) {
        CHECK(got[i].first.request_id == i + 1);
        CHECK(got[i].second.size() == 512 * 1024);
    }
}

TEST_CASE("a client or a peer started with another cluster file is refused on both sides, naming both") {
    test::local_cluster cluster;
    cluster.start_all();
    // The same three peers and a fourth: every slot moves, so every answer would be misrouted.
    auto text = read_file(cluster.config_file());
    const auto fourth = dhtkit::net::tcp_listener::bind(dhtkit::net::endpoint::parse("127.0.0.1:0")).local().port();
    text += fmt::format("[[peers]]\nid = 3\nhost = \"127.0.0.1\"\nport = {}\nshared = \"peer3/shared\"\ndata = \"peer3/data\"\n",
                        fourth);
    const auto other_file = cluster.dir() / "four-peers.toml";
    std::ofstream(other_file) << text;

    dhtkit::client stranger(dhtkit::load_config(other_file));
    auto r = stranger.get("anything");
    CHECK(r.code == status::refused);
    CHECK_THAT(r.error, Catch::Contains("cluster map mismatch") && Catch::Contains("four-peers.toml") &&
                            Catch::Contains(cluster.config_file().string()));

    // A peer of that file does not start beside them: its catch-up is refused, and it says why.
    const auto err = cluster.dir() / "peer3.err";
    const auto cmd = fmt::format("timeout 30 {} --config {} --id 3 --no-client --no-supervisor 2> {}", DHTKIT_PEER_BINARY,
                                 other_file.string(), err.string());
    const int status = std::system(cmd.c_str());
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 3);  // cannot start: not restarted by a supervisor either
    CHECK_THAT(read_file(err), Catch::Contains("cluster map mismatch"));
    // The cluster itself is unharmed.
    auto c = cluster.client();
    CHECK(c.put("after", "fine").ok());
}

TEST_CASE("a protected peer tells a stranger's hello neither its map nor where its cluster file is") {
    test::local_cluster cluster({.peers = 1, .backups = 0, .secret = true, .password = "pw-of-this-test"});
    cluster.start_all();
    test::raw_session raw{dhtkit::net::tcp_stream::connect(
        dhtkit::net::endpoint::parse(fmt::format("127.0.0.1:{}", cluster.config().peers[0].port)), 2s)};
    std::string hello;
    append_frame(hello, {opcode::hello, 0, status::ok, 1, 0, 0}, {},
                 encode(hello_request{0x1234, "/somewhere/else.toml"}));
    raw.send(hello);
    auto got = raw.read(1);
    REQUIRE(got.size() == 1);
    CHECK(got[0].first.code == status::refused);
    CHECK_THAT(got[0].second, Catch::Contains("cluster map mismatch") && Catch::Contains("/somewhere/else.toml") &&
                                  !Catch::Contains(cluster.config_file().string()) &&
                                  !Catch::Contains(fmt::format("{:016x}", cluster.client().map().hello_digest())));
    // The peer's log has the whole story.
    std::string said;
    CHECK(test::eventually([&] { return (said += cluster.pending_stderr(0)).find(cluster.config_file().string()) != std::string::npos; }, 5s));
}

TEST_CASE("obtain skips a holder whose file changed since it was registered, and names it, the holder registers it again") {
    test::local_cluster cluster({.backups = 0, .secret = true, .password = "files too"});  // only the holders the test makes
    write_file(cluster.shared(1) / "doc.bin", 4096, 5);
    std::filesystem::copy_file(cluster.shared(1) / "doc.bin", cluster.shared(2) / "doc.bin");
    const auto original = read_file(cluster.shared(1) / "doc.bin");
    cluster.start_all();
    auto c = cluster.client();
    REQUIRE(test::eventually([&] { return c.search("doc.bin").second.size() == 2; }));

    // One holder's copy changes behind the registry's back: the other delivers the registered bytes.
    write_file(cluster.shared(1) / "doc.bin", 4096, 6);  // same size, other bytes
    auto dest = cluster.dir() / "doc.copy";
    auto first = c.obtain("doc.bin", dest);
    REQUIRE(first.ok());
    CHECK(first.from_peer == 2);
    CHECK(read_file(dest) == original);

    // Both change: neither delivers, the error names both, and nothing is left behind.
    write_file(cluster.shared(1) / "doc.bin", 2048, 8);
    write_file(cluster.shared(2) / "doc.bin", 100, 7);
    auto dest2 = cluster.dir() / "doc.second";
    auto second = c.obtain("doc.bin", dest2);
    CHECK_FALSE(second.ok());
    INFO(second.error);
    CHECK(second.error.find("peer 1") != std::string::npos);
    CHECK(second.error.find("peer 2") != std::string::npos);
    CHECK(second.error.find("changed") != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(dest2));

    // Each holder noticed, and registered its file again as it is now: what search promises is
    // again what a holder delivers.
    REQUIRE(test::eventually([&] {
        auto [r, holders] = c.search("doc.bin");
        return holders.size() == 2 && std::all_of(holders.begin(), holders.end(), [](const auto& h) {
                   return h.size == (h.peer_id == 1 ? 2048u : 100u);
               });
    }));
    auto third = c.obtain("doc.bin", dest2);
    REQUIRE(third.ok());
    CHECK(read_file(dest2) == read_file(cluster.shared(static_cast<int>(third.from_peer)) / "doc.bin"));
}
