// The RESP front's pieces that need no connection: argument parsing, routing words, and the
// rendering of the services' outcomes into RESP replies.
#include <catch2/catch.hpp>

#include <dhtkit/cluster/cluster_map.hpp>
#include <dhtkit/cluster/replication.hpp>
#include <dhtkit/peer/front/resp_admin.hpp>
#include <dhtkit/peer/front/resp_cluster.hpp>
#include <dhtkit/peer/front/resp_commands.hpp>
#include <dhtkit/peer/front/resp_replies.hpp>

#include <string>
#include <variant>
#include <vector>

using namespace dhtkit;
using args = std::vector<std::string_view>;
using kind = resp_replies::plan::kind;
using plans_t = std::vector<resp_replies::plan>;

namespace {

// One outcome, as a service records it.
void frame(std::vector<outcome>& out, protocol::status code, std::string_view value = {}) {
    out.emplace_back(protocol::header{protocol::opcode::get, 0, code, 0, 0, 0}, value);
}

std::string render(const plans_t& plans, const std::vector<outcome>& answers, std::uint64_t now_ms = 0) {
    std::string out;
    resp_replies::render(plans, answers, out, now_ms);
    return out;
}

}  // namespace

TEST_CASE("RESP replies: each plan takes its own outcomes, in order") {
    std::vector<outcome> frames;
    frame(frames, protocol::status::ok, "v1");       // MGET a b: a is there,
    frame(frames, protocol::status::not_found);      // b is not
    frame(frames, protocol::status::ok);             // DEL a b c: two deleted,
    frame(frames, protocol::status::not_found);
    frame(frames, protocol::status::ok);
    frame(frames, protocol::status::not_found);      // GET c
    plans_t plans{{kind::values, 2, {}}, {kind::text, 0, "+PONG\r\n"},
                                           {kind::count_ok, 3, {}}, {kind::bulk, 1, {}}};
    CHECK(render(plans, frames) == "*2\r\n$2\r\nv1\r\n$-1\r\n+PONG\r\n:2\r\n$-1\r\n");
}

TEST_CASE("RESP replies: an unavailable holder is TRYAGAIN, another failure ERR, with the service's words") {
    std::vector<outcome> frames;
    frame(frames, protocol::status::ok, "v");
    frame(frames, protocol::status::unavailable, "ask the next holder");
    frame(frames, protocol::status::bad_request, "the key is empty");
    plans_t plans{{kind::values, 2, {}}, {kind::ok, 1, {}}};
    CHECK(render(plans, frames) == "-TRYAGAIN ask the next holder\r\n-ERR the key is empty\r\n");
}

TEST_CASE("RESP replies: TTL and PTTL count from the moment given, -1 without expiry, -2 without key") {
    std::vector<outcome> frames;
    frame(frames, protocol::status::ok, protocol::encode_u64(10'000) + "value");
    frame(frames, protocol::status::ok, protocol::encode_u64(10'000) + "value");
    frame(frames, protocol::status::ok, protocol::encode_u64(0) + "value");
    frame(frames, protocol::status::not_found);
    plans_t plans{{kind::ttl, 1, {}}, {kind::pttl, 1, {}}, {kind::ttl, 1, {}}, {kind::pttl, 1, {}}};
    CHECK(render(plans, frames, 7'400) == ":3\r\n:2600\r\n:-1\r\n:-2\r\n");
}

TEST_CASE("SET's options become a put's, and Redis's errors come back for bad ones") {
    using protocol::put_options;
    auto parsed = resp_commands::parse_set("set", args{"SET", "k", "v", "nx", "PX", "1500", "GET"}, 1'000);
    REQUIRE(std::holds_alternative<resp_commands::set_request>(parsed));
    const auto& r = std::get<resp_commands::set_request>(parsed);
    CHECK(r.value == "v");
    CHECK(r.options.mask == (put_options::if_absent | put_options::expires | put_options::return_old));
    CHECK(r.options.expires_at_ms == 2'500);

    auto setex = resp_commands::parse_set("setex", args{"SETEX", "k", "10", "v"}, 1'000);
    REQUIRE(std::holds_alternative<resp_commands::set_request>(setex));
    CHECK(std::get<resp_commands::set_request>(setex).options.expires_at_ms == 11'000);

    auto error_of = [](args a) { return std::get<std::string>(resp_commands::parse_set("set", a, 0)); };
    CHECK(error_of({"SET", "k", "v", "NX", "XX"}) == "ERR syntax error");
    CHECK(error_of({"SET", "k", "v", "EX", "10", "KEEPTTL"}) == "ERR syntax error");
    CHECK(error_of({"SET", "k", "v", "EX"}) == "ERR syntax error");
    CHECK(error_of({"SET", "k", "v", "EX", "ten"}) == "ERR value is not an integer or out of range");
    CHECK(error_of({"SET", "k", "v", "PX", "0"}) == "ERR invalid expire time in 'set' command");
}

TEST_CASE("EXPIRE's four forms give the moment the key goes; one due already is 1") {
    CHECK(std::get<std::uint64_t>(resp_commands::parse_expire("expire", args{"EXPIRE", "k", "5"}, 1'000)) == 6'000);
    CHECK(std::get<std::uint64_t>(resp_commands::parse_expire("pexpire", args{"PEXPIRE", "k", "5"}, 1'000)) == 1'005);
    CHECK(std::get<std::uint64_t>(resp_commands::parse_expire("expireat", args{"EXPIREAT", "k", "5"}, 1'000)) == 5'000);
    CHECK(std::get<std::uint64_t>(resp_commands::parse_expire("pexpireat", args{"PEXPIREAT", "k", "5"}, 1'000)) == 5);
    CHECK(std::get<std::uint64_t>(resp_commands::parse_expire("expire", args{"EXPIRE", "k", "-3"}, 1'000)) == 1);
    CHECK(std::get<std::string>(resp_commands::parse_expire("expire", args{"EXPIRE", "k", "5", "NX"}, 0)) ==
          "ERR Unsupported option NX");
}

TEST_CASE("a time past a signed 64-bit count of milliseconds is refused on every path, never wrapped round") {
    const std::int64_t now = 1'765'000'000'000;
    auto expire_error = [&](std::string_view name, std::string_view t) {
        auto r = resp_commands::parse_expire(name, args{name, "k", t}, now);
        return std::holds_alternative<std::string>(r) ? std::get<std::string>(r) : std::string("accepted");
    };
    const std::string biggest = "9223372036854775807";
    CHECK(expire_error("expire", biggest) == "ERR invalid expire time in 'expire' command");
    CHECK(expire_error("pexpire", biggest) == "ERR invalid expire time in 'pexpire' command");
    CHECK(expire_error("expireat", biggest) == "ERR invalid expire time in 'expireat' command");
    CHECK(expire_error("expire", "9223372036854775") == "ERR invalid expire time in 'expire' command");  // x1000 + now
    CHECK(expire_error("expire", "100000000000000000") == "ERR invalid expire time in 'expire' command");
    CHECK(expire_error("expire", "-9223372036854775808") == "ERR invalid expire time in 'expire' command");
    CHECK(expire_error("pexpireat", biggest) == "accepted");  // the latest moment there is, as in Redis
    CHECK(std::get<std::uint64_t>(resp_commands::parse_expire("pexpireat", args{"PEXPIREAT", "k", biggest}, now)) ==
          protocol::latest_expiry_ms);

    auto set_error = [&](args a) {
        auto r = resp_commands::parse_set(a[0], a, now);
        return std::holds_alternative<std::string>(r) ? std::get<std::string>(r) : std::string("accepted");
    };
    for (std::string_view unit : {"EX", "PX", "EXAT"})
        CHECK(set_error({"set", "k", "v", unit, biggest}) == "ERR invalid expire time in 'set' command");
    CHECK(set_error({"setex", "k", biggest, "v"}) == "ERR invalid expire time in 'setex' command");
    CHECK(set_error({"psetex", "k", biggest, "v"}) == "ERR invalid expire time in 'psetex' command");
    CHECK(set_error({"set", "k", "v", "PXAT", biggest}) == "accepted");

    // Our own frames: the expire opcode's moment and a put's expiry above it are malformed.
    std::string options;
    protocol::append(options, protocol::put_options{protocol::put_options::expires, protocol::latest_expiry_ms + 1});
    CHECK_FALSE(protocol::decode_put_options(options));
    options.clear();
    protocol::append(options, protocol::put_options{protocol::put_options::expires, protocol::latest_expiry_ms});
    CHECK(protocol::decode_put_options(options));
}

TEST_CASE("a command is found in any case, by its lower-case entry; an unknown one is not") {
    for (std::string_view spelled : {"get", "GET", "Get", "gEt"}) {
        const auto* ci = resp_commands::find_command(spelled);
        REQUIRE(ci);
        CHECK(ci->name == "get");
    }
    REQUIRE(resp_commands::find_command("DHT.Where"));
    CHECK(resp_commands::find_command("DHT.Where")->name == "dht.where");
    CHECK_FALSE(resp_commands::find_command("gets"));
    CHECK_FALSE(resp_commands::find_command("ge"));
    CHECK_FALSE(resp_commands::find_command(""));
}

TEST_CASE("a command's keys: one slot and within the limit, else Redis's refusal") {
    using refusal = std::string;
    CHECK(std::get<slot_t>(resp_commands::slot_of_keys({"{user1}a", "{user1}b"}, 16)) == key_slot("user1"));
    CHECK(std::get<refusal>(resp_commands::slot_of_keys({"a", "b"}, 16)) == "CROSSSLOT Keys in request don't hash to the same slot");
    CHECK(std::get<refusal>(resp_commands::slot_of_keys({std::string_view("0123456789abcdefg")}, 16)) ==
          "ERR key of 17 bytes: this cluster's limit is 16");
    CHECK(std::get<refusal>(resp_commands::slot_of_keys({"{u}a", "{u}0123456789abcdefg"}, 16)) ==
          "ERR key of 20 bytes: this cluster's limit is 16");
}

TEST_CASE("MOVED names the home's RESP address; a node that holds the slot is not moved") {
    std::vector<node> nodes{{1, "127.0.0.1", 7400, node_state::member, 7500}, {2, "127.0.0.2", 7401, node_state::member, 0}};
    const auto map = make_cluster_map(static_backup(0), 1, nodes);
    const auto first = slot_t{0}, last = slot_t{slot_count - 1};  // node 1's, node 2's
    CHECK_FALSE(resp_cluster::moved_to(map, 1, first));
    CHECK(resp_cluster::moved_to(map, 2, first) == "MOVED 0 127.0.0.1:7500");
    CHECK(resp_cluster::moved_to(map, 1, last) == fmt::format("ERR slot {} is held by peer 2, which has no resp_port", last));
}

TEST_CASE("CONFIG GET and CLIENT answer as Redis does; a wrong subcommand in Redis's words") {
    std::string o;
    resp_admin::config(o, {"CONFIG", "GET", "appendonly"}, "yes");
    CHECK(o == "*2\r\n$10\r\nappendonly\r\n$3\r\nyes\r\n");
    o.clear();
    resp_admin::config(o, {"CONFIG", "SET", "x", "y"}, "no");
    CHECK(o == "-ERR unknown subcommand 'SET'. Try CONFIG HELP.\r\n");

    bool authenticated = false;
    std::string name;
    o.clear();
    resp_admin::client(o, {"CLIENT", "SETNAME", "bad name"}, {authenticated, name, 7});
    CHECK(o.starts_with("-ERR Client names cannot contain spaces"));
    o.clear();
    resp_admin::client(o, {"CLIENT", "SETNAME", "worker"}, {authenticated, name, 7});
    CHECK(name == "worker");
    o.clear();
    resp_admin::auth(o, "wrong", "secret", {authenticated, name, 7});
    CHECK(o == "-WRONGPASS invalid username-password pair or user is disabled.\r\n");
    CHECK_FALSE(authenticated);
    o.clear();
    resp_admin::auth(o, "secret", "secret", {authenticated, name, 7});
    CHECK(o == "+OK\r\n");
    CHECK(authenticated);
}
