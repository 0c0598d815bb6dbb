// The cluster secret on real processes: with it, the nodes sign their requests to each other and
// the cluster works as without it; a host without it can change, read through sync, plant or
// redirect nothing; a recorded signed request cannot be replayed.

#include <catch2/catch.hpp>

#include "local_cluster.hpp"
#include "raw_session.hpp"

#include <dhtkit/protocol/auth.hpp>
#include <dhtkit/protocol/messages.hpp>
#include <dhtkit/store/versioned.hpp>

using namespace dhtkit;
using namespace dhtkit::protocol;
using namespace std::chrono_literals;

namespace {

// A record of `key` stamped far ahead of any real write, so that it would win if applied.
std::string winning_record(std::string_view value) {
    std::string rec(1, static_cast<char>(table_id::keys));
    append_versioned(rec, dhtkit::version{stamp_now() + 1'000'000, 77, 1}, false, value);
    return rec;
}

// Says hello as a node of this cluster would and returns the session nonce the peer answered.
session_nonce hello_for_nonce(test::raw_session& s, const test::local_cluster& cluster) {
    client probe(cluster.config());
    const auto digest = probe.map().digest();
    s.send(test::frame(opcode::hello, 0, {}, encode(hello_request{digest, cluster.config_file().string(), nullptr})));
    auto got = s.read(1);
    REQUIRE(got.size() == 1);
    REQUIRE(got[0].first.code == status::ok);
    REQUIRE(got[0].second.size() == session_nonce{}.size());
    session_nonce n{};
    std::memcpy(n.data(), got[0].second.data(), n.size());
    return n;
}

}  // namespace

TEST_CASE("with a cluster secret, the nodes work together as without one") {
    test::local_cluster cluster({.secret = true});
    REQUIRE(cluster.config().cluster_key);
    cluster.start_all();
    auto c = cluster.client(2000ms);
    REQUIRE(c.put("signed", "yes").ok());
    for (auto p : c.holders("signed")) {
        auto e = test::own_copy(c, p, "signed");  // a signed own-copy read
        REQUIRE(e);
        CHECK(e->value == "yes");
    }
    // A restarted peer catches up (sync, leases, copies: all signed) and serves.
    const auto victim = static_cast<int>(c.holders("signed")[1]);
    cluster.kill(victim);
    REQUIRE(c.put("signed", "again").ok());
    cluster.start(victim);
    CHECK(c.call(static_cast<std::size_t>(victim), opcode::get, "signed").value == "again");
}

TEST_CASE("a host without the cluster secret can change, read, plant or redirect nothing") {
    test::local_cluster cluster({.secret = true});
    cluster.start_all();
    auto c = cluster.client(2000ms);
    REQUIRE(c.put("target", "honest").ok());
    const auto home = static_cast<int>(c.holders("target")[0]);

    test::raw_session s{test::raw_connect(cluster, home)};
    hello_for_nonce(s, cluster);  // a hello with the right map, but no secret to sign with
    const std::string holder_record = encode_holders({{7, "10.0.0.1", 9, 1, 2}});
    s.send(test::frame(opcode::replicate, 1, "target", winning_record("forged")) +
           test::frame(opcode::sync, 2, {}, encode(sync_request{0, {{0, slot_count - 1}}})) +
           test::frame(opcode::lease, 3, {}, encode_u64(0)) +
           test::frame(opcode::register_file, 4, "planted.txt", holder_record) +
           test::frame(opcode::unregister_file, 5, "planted.txt", encode_u64(0)) +
           test::frame(opcode::replicate_file, 6, "planted.txt", holder_record));
    auto got = s.read(6);
    REQUIRE(got.size() == 6);
    for (const auto& [h, why] : got) {
        INFO(static_cast<int>(h.op) << ": " << why);
        CHECK(h.code == status::refused);
        CHECK(why.find("secret") != std::string::npos);
    }
    // An own-copy read (what a majority read asks of another holder) is refused too.
    std::string own;
    append_frame(own, {opcode::get, flag_own_copy, status::ok, 7, 0, 0}, "target", {});
    s.send(own);
    auto read = s.read(1);
    REQUIRE(read.size() == 1);
    CHECK(read[0].first.code == status::refused);
    // Nothing changed, on any holder; the connection still serves what any client may ask.
    for (auto p : c.holders("target")) CHECK(test::own_copy(c, p, "target")->value == "honest");
    CHECK(c.search("planted.txt").first.code == status::not_found);
    s.send(test::frame(opcode::get, 8, "target"));
    auto plain = s.read(1);
    REQUIRE(plain.size() == 1);
    CHECK(plain[0].second == "honest");
}

TEST_CASE("a signed request is good once, on its own connection") {
    test::local_cluster cluster({.secret = true});
    cluster.start_all();
    auto c = cluster.client(2000ms);
    REQUIRE(c.put("replayed", "first").ok());
    const auto home = static_cast<int>(c.holders("replayed")[0]);
    const auto& key = *cluster.config().cluster_key;

    test::raw_session a{test::raw_connect(cluster, home)};
    const frame_signer sign_a(key, hello_for_nonce(a, cluster));
    std::string recorded;
    sign_a.append(recorded, {opcode::replicate, 0, status::ok, 5, 0, 0}, "replayed", winning_record("signed once"));
    a.send(recorded);
    auto first = a.read(1);
    REQUIRE(first.size() == 1);
    CHECK(first[0].first.code == status::ok);  // a node of the cluster may replicate
    a.send(recorded);                          // the same bytes again: its id is spent
    auto again = a.read(1);
    REQUIRE(again.size() == 1);
    CHECK(again[0].first.code == status::refused);

    test::raw_session b{test::raw_connect(cluster, home)};
    hello_for_nonce(b, cluster);
    b.send(recorded);  // on another connection: another nonce
    auto elsewhere = b.read(1);
    REQUIRE(elsewhere.size() == 1);
    CHECK(elsewhere[0].first.code == status::refused);
    // A tampered byte fails as well.
    const frame_signer sign_b(key, hello_for_nonce(b, cluster));
    std::string tampered;
    sign_b.append(tampered, {opcode::replicate, 0, status::ok, 9, 0, 0}, "replayed", winning_record("x"));
    tampered[header_size + 3] ^= 1;
    b.send(tampered);
    auto bad = b.read(1);
    REQUIRE(bad.size() == 1);
    CHECK(bad[0].first.code == status::refused);
}

TEST_CASE("with a client password, a connection sends it before anything but ping") {
    test::local_cluster cluster({.secret = true, .password = "open sesame"});
    REQUIRE(cluster.config().client_password == "open sesame");
    cluster.start_all();
    auto c = cluster.client(2000ms);  // has the password from the cluster file
    REQUIRE(c.put("guarded", "v").ok());
    CHECK(c.get("guarded").value == "v");

    test::raw_session s{test::raw_connect(cluster, 0)};
    s.send(test::frame(opcode::ping, 1, {}) + test::frame(opcode::put, 2, "guarded", "forged") +
           test::frame(opcode::get, 3, "guarded") + test::frame(opcode::auth, 4, {}, "guess") +
           test::frame(opcode::put, 5, "guarded", "forged") + test::frame(opcode::auth, 6, {}, "open sesame") +
           test::frame(opcode::get, 7, "guarded"));
    auto got = s.read(7);
    REQUIRE(got.size() == 4);  // a wrong password closes the connection once it is answered
    CHECK(s.closed);
    CHECK(got[0].first.code == status::ok);  // ping needs no password
    CHECK(got[1].first.code == status::refused);
    CHECK(got[1].second.find("authentication required") != std::string::npos);
    CHECK(got[2].first.code == status::refused);  // reads too
    CHECK(got[3].first.code == status::refused);
    CHECK(got[3].second == "wrong password");
    // The next guess needs a connection of its own; the right password lets requests through.
    test::raw_session t{test::raw_connect(cluster, 0)};
    t.send(test::frame(opcode::put, 5, "guarded", "forged") + test::frame(opcode::auth, 6, {}, "open sesame") +
           test::frame(opcode::get, 7, "guarded"));
    got = t.read(3);
    REQUIRE(got.size() == 3);
    CHECK(got[0].first.code == status::refused);
    CHECK(got[1].first.code == status::ok);
    CHECK(got[2].first.code == status::ok);
    CHECK(got[2].second == "v");  // nothing forged got in
    CHECK(test::stat_value(c, 0, "auth_failures") == "1");  // counted

    // A client with a wrong password hears why.
    auto settings = cluster.config();
    settings.client_password = "guess";
    client wrong(settings);
    auto r = wrong.put("guarded", "forged");
    CHECK_FALSE(r.ok());
    CHECK(r.error.find("wrong password") != std::string::npos);
    CHECK(c.get("guarded").value == "v");
}
