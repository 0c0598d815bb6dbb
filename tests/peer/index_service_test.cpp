#include <catch2/catch.hpp>

#include <dhtkit/peer/index_service.hpp>

#include <algorithm>
#include <bitset>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

using namespace dhtkit;
using namespace dhtkit::protocol;

namespace {

struct harness {
    locked_table<std::string, std::string> keys, files;
    index_service<locked_table<std::string, std::string>> service{keys, files, 3, 64};

    frame_view ask(opcode op, std::string_view key, std::string_view value = {}, std::uint8_t flags = 0) {
        out = {};
        wrote = service.handle({{op, flags, status::ok, ++id, 0, 0}, key, value}, out, &record);
        REQUIRE(out.request_id == id);
        REQUIRE(out.op == op);
        answer = out.value;
        return {out.header(), {}, answer};
    }
    outcome out;
    std::string answer, record;
    bool wrote = false;
    std::uint64_t id = 0;
};

}  // namespace

TEST_CASE("put, get and del answer with the value or not found") {
    harness h;
    CHECK(h.ask(opcode::get, "k").h.code == status::not_found);
    CHECK(h.ask(opcode::put, "k", "v1").h.code == status::ok);
    auto got = h.ask(opcode::get, "k");
    CHECK(got.h.code == status::ok);
    CHECK(got.value == "v1");
    CHECK(h.ask(opcode::del, "k").h.code == status::ok);
    CHECK(h.ask(opcode::del, "k").h.code == status::not_found);
}

TEST_CASE("the registry keeps one record per holder, and search lists them") {
    harness h;
    std::string a, b, a2;
    append(a, holder{1, "127.0.0.1", 7401, 10, 111});
    append(b, holder{2, "127.0.0.1", 7402, 10, 111});
    append(a2, holder{1, "127.0.0.1", 7401, 12, 222});
    CHECK(h.ask(opcode::search, "f").h.code == status::not_found);
    CHECK(h.ask(opcode::register_file, "f", a).h.code == status::ok);
    CHECK(h.ask(opcode::register_file, "f", b).h.code == status::ok);
    CHECK(h.ask(opcode::register_file, "f", a2).h.code == status::ok);
    auto found = decode_holders(h.ask(opcode::search, "f").value);
    REQUIRE(found);
    REQUIRE(found->size() == 2);
    CHECK((*found)[0].peer_id == 2);
    CHECK((*found)[1].size == 12);
    CHECK(h.ask(opcode::unregister_file, "f", encode_u64(2)).h.code == status::ok);
    CHECK(h.ask(opcode::unregister_file, "f", encode_u64(2)).h.code == status::not_found);
    CHECK(h.ask(opcode::unregister_file, "f", encode_u64(1)).h.code == status::ok);
    CHECK(h.ask(opcode::search, "f").h.code == status::not_found);
}

TEST_CASE("malformed registry requests are refused without touching the registry") {
    harness h;
    CHECK(h.ask(opcode::register_file, "f", "garbage").h.code == status::bad_request);
    CHECK(h.ask(opcode::register_file, "", "").h.code == status::bad_request);
    CHECK(h.ask(opcode::unregister_file, "f", "xx").h.code == status::bad_request);
    CHECK(h.files.size() == 0);
    CHECK(h.ask(opcode::ping, "").h.code == status::unknown_opcode);
}

TEST_CASE("a value over the limit is refused and the key keeps its old value") {
    harness h;
    CHECK(h.ask(opcode::put, "k", "small").h.code == status::ok);
    auto big = h.ask(opcode::put, "k", std::string(65, 'x'));
    CHECK(big.h.code == status::too_large);
    CHECK(big.value == "the value is 65 bytes; this peer's limit is 64");
    CHECK_FALSE(h.wrote);
    auto empty = h.ask(opcode::put, "", "v");
    CHECK(empty.h.code == status::bad_request);
    CHECK(empty.value == "the key is empty");
    for (auto op : {opcode::get, opcode::del, opcode::expire, opcode::search, opcode::register_file}) {
        INFO("opcode " << static_cast<int>(op));
        auto f = h.ask(op, "", op == opcode::expire ? encode_u64(1) : std::string());
        CHECK(f.h.code == status::bad_request);  // as docs/protocol.md says; a get said not_found
        CHECK(f.value == "the key is empty");
    }
    CHECK(h.ask(opcode::get, "k").value == "small");
}

TEST_CASE("a write hands back a record that makes another replica equal") {
    harness primary, backup;
    REQUIRE(primary.ask(opcode::put, "k", "v1").h.code == status::ok);
    REQUIRE(primary.wrote);
    REQUIRE(record_table(primary.record) == table_id::keys);
    CHECK(backup.service.apply("k", primary.record));
    CHECK(backup.ask(opcode::get, "k").value == "v1");

    std::string a;
    append(a, holder{1, "127.0.0.1", 7401, 10, 111});
    REQUIRE(primary.ask(opcode::register_file, "f", a).h.code == status::ok);
    REQUIRE(record_table(primary.record) == table_id::files);
    CHECK(backup.service.apply("f", primary.record));
    CHECK(decode_holders(backup.ask(opcode::search, "f").value)->size() == 1);
}

TEST_CASE("replicas keep the newest version whatever order the records arrive in") {
    harness primary, backup;
    primary.ask(opcode::put, "k", "old");
    auto older = primary.record;
    primary.ask(opcode::put, "k", "new");
    auto newer = primary.record;
    CHECK(read_versioned(std::string_view(newer).substr(1))->version >
          read_versioned(std::string_view(older).substr(1))->version);
    CHECK(backup.service.apply("k", newer));
    CHECK(backup.service.apply("k", older));  // accepted, and ignored
    CHECK(backup.ask(opcode::get, "k").value == "new");
}

TEST_CASE("a delete leaves a tombstone that an older copy cannot undo") {
    harness primary, backup;
    primary.ask(opcode::put, "k", "v");
    auto put = primary.record;
    CHECK(primary.ask(opcode::del, "k").h.code == status::ok);
    REQUIRE(primary.wrote);
    auto tombstone = primary.record;
    CHECK(backup.service.apply("k", tombstone));
    CHECK(backup.service.apply("k", put));
    CHECK(backup.ask(opcode::get, "k").h.code == status::not_found);
    // Deleting what is not here still writes a tombstone, for replicas that missed the put.
    CHECK(backup.ask(opcode::del, "other").h.code == status::not_found);
    CHECK(backup.wrote);
}

TEST_CASE("a write made over a newer copy from a peer with a fast clock still wins") {
    harness fast, slow;
    std::string far_future(1, static_cast<char>(table_id::keys));
    // 30 s ahead: within the 60 s of clock skew a peer accepts.
    append_versioned(far_future, dhtkit::version{stamp_now() + 30'000'000, 9, 0}, false, "from the future");
    CHECK(slow.service.apply("k", far_future));
    CHECK(slow.ask(opcode::put, "k", "now").h.code == status::ok);
    CHECK(fast.service.apply("k", far_future));
    CHECK(fast.service.apply("k", slow.record));
    CHECK(fast.ask(opcode::get, "k").value == "now");
}

TEST_CASE("records are listed for catch-up and can be read back one key at a time") {
    harness h;
    h.ask(opcode::put, "a", "1");
    h.ask(opcode::put, "b", "2");
    h.ask(opcode::del, "b");
    std::string a;
    append(a, holder{1, "127.0.0.1", 7401, 10, 111});
    h.ask(opcode::register_file, "f", a);
    harness copy;
    std::size_t n = 0;
    h.service.for_each_record([&](std::string_view key, std::string_view record) {
        ++n;
        CHECK(copy.service.apply(key, record));
    });
    CHECK(n == 3);
    CHECK(copy.ask(opcode::get, "a").value == "1");
    CHECK(copy.ask(opcode::get, "b").h.code == status::not_found);
    CHECK(copy.ask(opcode::search, "f").h.code == status::ok);
    CHECK(h.service.record_of(table_id::keys, "a") == copy.service.record_of(table_id::keys, "a"));
    CHECK_FALSE(h.service.record_of(table_id::files, "a"));
}

TEST_CASE("malformed records are refused") {
    harness h;
    CHECK_FALSE(h.service.apply("k", ""));
    CHECK_FALSE(h.service.apply("k", std::string("\x07", 1) + std::string(versioned_header_size, '\0')));
    CHECK_FALSE(h.service.apply("k", std::string(5, '\0')));
    CHECK_FALSE(h.service.apply("", std::string(versioned_header_size + 1, '\0')));
    CHECK(h.keys.size() == 0);
}

namespace {
std::string stamped(const dhtkit::version& v, std::string_view payload = {}) {
    std::string out;
    append_version(out, v);
    out += payload;
    return out;
}
frame_view ask_stamped(harness& h, opcode op, std::string_view key, std::string_view value) {
    h.out = {};
    h.wrote = h.service.handle({{op, flag_stamped, status::ok, ++h.id, 0, 0}, key, value}, h.out, &h.record);
    h.answer = h.out.value;
    return {h.out.header(), {}, h.answer};
}
}  // namespace

TEST_CASE("a client-stamped write that arrives late loses to one issued after it, and a delete stays deleted") {
    harness h;
    const auto t = stamp_now();
    const dhtkit::version first{t, 77, 1}, second{t + 10, 77, 2}, third{t + 20, 77, 3};
    CHECK(ask_stamped(h, opcode::put, "k", stamped(second, "newer")).h.code == status::ok);
    CHECK(ask_stamped(h, opcode::put, "k", stamped(first, "older, delivered late")).h.code == status::ok);
    CHECK_FALSE(h.wrote);  // nothing to copy: it lost
    CHECK(h.ask(opcode::get, "k").value == "newer");
    CHECK(ask_stamped(h, opcode::del, "k", stamped(third)).h.code == status::ok);
    CHECK(ask_stamped(h, opcode::put, "k", stamped(second, "newer")).h.code == status::ok);  // a retry of the put
    CHECK(h.ask(opcode::get, "k").h.code == status::not_found);
    // The same version again (a client's retry through another holder) is copied again.
    CHECK(ask_stamped(h, opcode::del, "k", stamped(third)).h.code == status::ok);
    CHECK(h.wrote);
    CHECK(read_versioned(std::string_view(h.record).substr(1))->version == third);
}

TEST_CASE("a get asked for its version answers it with the value, for the client's clock") {
    harness h;
    const dhtkit::version v{stamp_now(), 5, 9};
    ask_stamped(h, opcode::put, "k", stamped(v, "value"));
    auto got = ask_stamped(h, opcode::get, "k", {});
    CHECK(got.h.flags == flag_stamped);
    REQUIRE(got.value.size() == version_size + 5);
    CHECK(read_version(got.value) == v);
    CHECK(got.value.substr(version_size) == "value");
}

TEST_CASE("a version stamped further ahead than the allowed clock skew is refused, from a client or a replica") {
    harness h;
    const dhtkit::version poison{stamp_now() + 3'600'000'000ull, 1, 0};  // an hour ahead
    auto r = ask_stamped(h, opcode::put, "k", stamped(poison, "x"));
    CHECK(r.h.code == status::refused);
    CHECK_THAT(std::string(r.value), Catch::Contains("ahead"));
    std::string record(1, static_cast<char>(table_id::keys));
    append_versioned(record, poison, false, "x");
    CHECK_FALSE(h.service.apply("k", record));
    CHECK(h.service.refused_ahead() == 1);
    CHECK(h.keys.size() == 0);
    // And a later ordinary write to the key is not poisoned.
    CHECK(h.ask(opcode::put, "k", "fine").h.code == status::ok);
    CHECK(h.ask(opcode::get, "k").value == "fine");
    CHECK(ask_stamped(h, opcode::put, "k", "short").h.code == status::bad_request);  // no whole version
}

namespace {
std::string with_options(std::uint8_t mask, std::uint64_t expires_at_ms, std::string_view value) {
    std::string out;
    append(out, put_options{mask, expires_at_ms});
    out += value;
    return out;
}
}  // namespace

TEST_CASE("a value with an expiry reads as none once its moment has come, on any copy") {
    harness h;
    const auto now = unix_ms_now();
    CHECK(h.ask(opcode::put, "soon", with_options(put_options::expires, now + 200, "v"), flag_options).h.code == status::ok);
    const auto record = h.record;  // what the other holders apply: the expiry travels with it
    CHECK(h.ask(opcode::put, "past", with_options(put_options::expires, now - 1, "v"), flag_options).h.code == status::ok);
    CHECK(h.ask(opcode::get, "past").h.code == status::not_found);
    auto ttl = h.ask(opcode::get, "soon", {}, flag_options);
    REQUIRE(ttl.h.code == status::ok);
    CHECK(decode_u64(ttl.value.substr(0, 8)) == now + 200);
    CHECK(ttl.value.substr(8) == "v");
    harness replica;
    CHECK(replica.service.apply("soon", record));
    CHECK(replica.ask(opcode::get, "soon").value == "v");
    // Expired on both at once: the moment is absolute. (The only wait here is the expiry itself.)
    while (unix_ms_now() < now + 200) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    CHECK(h.ask(opcode::get, "soon").h.code == status::not_found);
    CHECK(replica.ask(opcode::get, "soon").h.code == status::not_found);
    CHECK(h.ask(opcode::del, "soon").h.code == status::not_found);  // as Redis: nothing was there
}

TEST_CASE("put options: if absent, if present, keep the expiry, answer the old value") {
    harness h;
    const auto later = unix_ms_now() + 60'000;
    auto outcome = [&] { return *decode_put_outcome(h.answer); };
    h.ask(opcode::put, "k", with_options(put_options::if_present, 0, "x"), flag_options);
    CHECK_FALSE(outcome().set);  // XX on a missing key
    CHECK_FALSE(h.wrote);
    h.ask(opcode::put, "k", with_options(put_options::if_absent | put_options::expires, later, "a"), flag_options);
    CHECK(outcome().set);
    CHECK(h.wrote);
    h.ask(opcode::put, "k", with_options(put_options::if_absent | put_options::return_old, 0, "b"), flag_options);
    CHECK_FALSE(outcome().set);  // NX on a present key, and GET says what is there
    CHECK(outcome().had_value);
    CHECK(outcome().old_value == "a");
    h.ask(opcode::put, "k", with_options(put_options::keep_ttl, 0, "c"), flag_options);
    CHECK(outcome().set);
    CHECK(decode_u64(h.ask(opcode::get, "k", {}, flag_options).value.substr(0, 8)) == later);
    h.ask(opcode::put, "k", with_options(put_options::return_old, 0, "d"), flag_options);
    CHECK(outcome().old_value == "c");
    CHECK(decode_u64(h.ask(opcode::get, "k", {}, flag_options).value.substr(0, 8)) == 0);  // a plain SET drops it
    CHECK(h.ask(opcode::put, "k", "bad options", flag_options).h.code == status::bad_request);
}

TEST_CASE("an expire past a signed 64-bit count of milliseconds is refused and the key kept") {
    harness h;
    h.ask(opcode::put, "k", "v");
    auto f = h.ask(opcode::expire, "k", encode_u64(latest_expiry_ms + 1));
    CHECK(f.h.code == status::bad_request);
    CHECK_FALSE(h.wrote);
    CHECK(h.ask(opcode::get, "k").h.code == status::ok);
    CHECK(h.answer == "v");
    f = h.ask(opcode::expire, "k", encode_u64(~std::uint64_t{0}));
    CHECK(f.h.code == status::bad_request);
    CHECK(h.ask(opcode::expire, "k", encode_u64(latest_expiry_ms)).h.code == status::ok);
    CHECK(h.ask(opcode::get, "k").h.code == status::ok);
}

TEST_CASE("expire sets, removes or runs out a key's expiry, reclaiming frees expired values and digests still agree") {
    harness h;
    CHECK(h.ask(opcode::expire, "none", encode_u64(unix_ms_now() + 1000)).h.code == status::not_found);
    h.ask(opcode::put, "k", "v");
    CHECK(h.ask(opcode::expire, "k", encode_u64(0)).value == std::string(1, '\0'));  // PERSIST: nothing to remove
    CHECK_FALSE(h.wrote);
    CHECK(h.ask(opcode::expire, "k", encode_u64(unix_ms_now() + 60'000)).value == std::string(1, '\1'));
    CHECK(h.wrote);
    CHECK(h.ask(opcode::expire, "k", encode_u64(0)).value == std::string(1, '\1'));
    CHECK(h.ask(opcode::expire, "k", encode_u64(1)).h.code == status::ok);  // due already: the key goes
    CHECK(h.ask(opcode::get, "k").h.code == status::not_found);

    // Two holders of one expired value; one frees it: their digests agree all the same.
    harness a, b;
    a.ask(opcode::put, "gone", with_options(put_options::expires, unix_ms_now() - 5, "a large value"), flag_options);
    REQUIRE(b.service.apply("gone", a.record));
    std::bitset<slot_count> all;
    all.set();
    const auto before = a.service.slot_digests(all);
    std::size_t freed = 0;
    for (std::size_t s = 0; s < decltype(a.keys)::shard_count; ++s) freed += a.service.reclaim_expired(s);
    CHECK(freed == 1);
    CHECK(a.service.slot_digests(all) == before);
    CHECK(a.service.slot_digests(all) == b.service.slot_digests(all));
    CHECK(a.service.live_keys() == 0);
    CHECK(b.service.live_keys() == 0);
}

TEST_CASE("a stamped get of a deleted key answers not_found with the delete's version") {
    harness h;
    const dhtkit::version put_at{stamp_now(), 5, 1}, del_at{stamp_now() + 1, 5, 2};
    ask_stamped(h, opcode::put, "k", stamped(put_at, "value"));
    ask_stamped(h, opcode::del, "k", stamped(del_at));
    auto got = ask_stamped(h, opcode::get, "k", {});
    CHECK(got.h.code == status::not_found);
    CHECK(got.h.flags == flag_stamped);
    CHECK(read_version(got.value) == del_at);
    // Never written: not_found and nothing more.
    auto none = ask_stamped(h, opcode::get, "never", {});
    CHECK(none.h.code == status::not_found);
    CHECK(none.value.empty());
}

TEST_CASE("tombstones past the purge period that every holder had are purged, left out of digests, and not taken back") {
    using namespace std::chrono_literals;
    const auto ago = [](std::chrono::seconds s) {
        return static_cast<std::uint64_t>(stamp_now() - static_cast<std::uint64_t>(s.count()) * 1'000'000);
    };
    harness a, b;  // two holders of the same writes; a purges, b has not yet
    const dhtkit::version put_old{ago(20s), 5, 1}, del_old{ago(10s), 5, 2}, del_recent{ago(1s), 5, 3},
        put_live{ago(30s), 5, 4};
    for (auto* h : {&a, &b}) {
        h->service.purge_after(5s);
        ask_stamped(*h, opcode::put, "old", stamped(put_old, "deleted long ago"));
        ask_stamped(*h, opcode::del, "old", stamped(del_old));
        ask_stamped(*h, opcode::del, "recent", stamped(del_recent));
        ask_stamped(*h, opcode::put, "live", stamped(put_live, "kept"));
    }
    std::bitset<slot_count> all;
    all.set();
    CHECK(a.service.slot_digests(all) == b.service.slot_digests(all));
    auto purge_all = [](harness& h, auto agreed_by) {
        std::size_t n = 0;
        for (std::size_t s = 0; s < decltype(h.keys)::shard_count; ++s) n += h.service.purge_tombstones(s, agreed_by);
        return n;
    };

    // Past the period, but the other holders never agreed on the slot, or agreed too soon after
    // the delete (less than half a period): kept.
    CHECK(purge_all(a, [](slot_t) { return std::uint64_t{0}; }) == 0);
    CHECK(purge_all(a, [&](slot_t) { return del_old.stamp + 2'000'000; }) == 0);
    CHECK(a.keys.contains("old"));
    // They agreed since: purged.
    const auto now = stamp_now();
    CHECK(purge_all(a, [&](slot_t) { return now; }) == 1);
    CHECK_FALSE(a.keys.contains("old"));
    CHECK(a.keys.contains("recent"));  // not old enough yet
    CHECK(a.ask(opcode::get, "live").value == "kept");
    // A holder that purged agrees with one that has not.
    CHECK(a.service.slot_digests(all) == b.service.slot_digests(all));
    // A copy of the purged tombstone is not taken back.
    REQUIRE(b.service.record_of(table_id::keys, "old"));
    CHECK(a.service.apply("old", *b.service.record_of(table_id::keys, "old")));
    CHECK_FALSE(a.keys.contains("old"));
    // A recent one is taken, as always.
    harness c;
    c.service.purge_after(5s);
    CHECK(c.service.apply("recent", *b.service.record_of(table_id::keys, "recent")));
    CHECK(c.keys.contains("recent"));
    // A holder that missed a write made before the horizon takes it from a stream (what a holder
    // has now), not from a copy of the write (which may be a late one).
    harness e;
    e.service.purge_after(5s);
    REQUIRE(b.service.record_of(table_id::keys, "live"));
    CHECK(e.service.apply("live", *b.service.record_of(table_id::keys, "live")));
    CHECK_FALSE(e.keys.contains("live"));
    CHECK(e.service.apply("live", *b.service.record_of(table_id::keys, "live"), true));
    CHECK(e.ask(opcode::get, "live").value == "kept");

    // A holder that missed the delete has the old value: its digest differs from a's (so a's
    // agreement never comes, and b keeps its tombstone); b's stream still carries the tombstone,
    // which replaces the value; then all three agree.
    harness d;
    d.service.purge_after(5s);
    ask_stamped(d, opcode::put, "old", stamped(put_old, "deleted long ago"));
    ask_stamped(d, opcode::del, "recent", stamped(del_recent));
    ask_stamped(d, opcode::put, "live", stamped(put_live, "kept"));
    CHECK(d.service.slot_digests(all) != a.service.slot_digests(all));
    std::vector<std::pair<std::string, std::string>> streamed;
    for (std::size_t s = 0; s < decltype(b.keys)::shard_count; ++s)
        b.service.for_each_record_in(table_id::keys, s, [&](std::string_view k, std::string_view r) {
            streamed.emplace_back(std::string(k), std::string(r));
        });
    CHECK(std::find_if(streamed.begin(), streamed.end(), [](auto& kr) { return kr.first == "old"; }) != streamed.end());
    for (const auto& [k, r] : streamed) CHECK(d.service.apply(k, r));
    CHECK(d.ask(opcode::get, "old").h.code == status::not_found);
    CHECK(d.service.slot_digests(all) == a.service.slot_digests(all));

    // Without a period nothing is purged.
    b.service.purge_after(0s);
    CHECK(purge_all(b, [&](slot_t) { return now; }) == 0);
    CHECK(b.keys.contains("old"));
}

TEST_CASE("erase_if removes only what its predicate allows, and a shrunk shard keeps working") {
    locked_table<std::string, std::string> t;
    for (int i = 0; i < 20000; ++i) t.put(fmt::format("k{}", i), "v");
    for (int i = 0; i < 20000; ++i) CHECK(t.erase_if(fmt::format("k{}", i), [](std::string_view v) { return v == "v"; }));
    CHECK_FALSE(t.erase_if("k1", [](std::string_view) { return true; }));
    t.put("a", "keep");
    CHECK_FALSE(t.erase_if("a", [](std::string_view v) { return v == "other"; }));
    for (std::size_t s = 0; s < decltype(t)::shard_count; ++s) t.shrink_shard(s);
    CHECK(t.size() == 1);
    CHECK(t.try_get("a") == "keep");
    t.put("b", "again");  // a shard shrunk to nothing takes inserts as before
    CHECK(t.try_get("b") == "again");
}
