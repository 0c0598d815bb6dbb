// The gossip datagram: round trips, signatures, and refusals of whatever is malformed.
#include <catch2/catch.hpp>

#include <dhtkit/cluster/gossip.hpp>
#include <dhtkit/cluster/map_codec.hpp>
#include <dhtkit/cluster/replication.hpp>

using namespace dhtkit;
using namespace dhtkit::protocol;

namespace {
gossip_message sample(gossip_kind kind) {
    gossip_message m;
    m.kind = kind;
    m.seq = 0x1122334455667788ULL;
    m.from = 7;
    m.cluster = 99;
    if (kind == gossip_kind::ping_req) m.target = {3, "10.1.2.3", 7003, node_state::member};
    m.records.push_back({{3, "10.1.2.3", 7003, node_state::suspect, 7503}, 4});
    m.records.push_back({{9, "host.example", 65535, node_state::left, 0}, 0});
    return m;
}
}  // namespace

TEST_CASE("gossip datagrams round-trip, signed and unsigned") {
    const auto key = derive_key("the secret");
    for (auto kind : {gossip_kind::ping, gossip_kind::ack, gossip_kind::ping_req, gossip_kind::sync, gossip_kind::sync_reply,
                      gossip_kind::gossip}) {
        auto m = sample(kind);
        for (const cluster_key* k : {static_cast<const cluster_key*>(nullptr), &key}) {
            auto bytes = encode(m, k);
            auto back = decode_gossip(bytes, k);
            REQUIRE(back);
            CHECK(back->kind == kind);
            CHECK(back->seq == m.seq);
            CHECK(back->from == 7);
            CHECK(back->cluster == 99);
            CHECK(back->records == m.records);
            if (kind == gossip_kind::ping_req) CHECK(back->target == m.target);
        }
    }
}

TEST_CASE("gossip datagrams without the cluster's secret are refused, and every cut or flip is refused") {
    const auto key = derive_key("the secret");
    const auto other = derive_key("another secret");
    auto m = sample(gossip_kind::sync);
    gossip_refusal why{};
    CHECK_FALSE(decode_gossip(encode(m, nullptr), &key, &why));
    CHECK(why == gossip_refusal::unsigned_message);
    CHECK_FALSE(decode_gossip(encode(m, &other), &key, &why));
    CHECK(why == gossip_refusal::bad_mac);
    CHECK(decode_gossip(encode(m, &other), nullptr));  // an open node cannot check, and reads it

    auto signed_bytes = encode(m, &key);
    for (std::size_t i = 0; i < signed_bytes.size(); ++i) {
        auto flipped = signed_bytes;
        flipped[i] = static_cast<char>(flipped[i] ^ 0x40);
        INFO("flip at " << i);
        CHECK_FALSE(decode_gossip(flipped, &key));
    }
    auto plain = encode(m, nullptr);
    for (std::size_t n = 0; n < plain.size(); ++n) {
        INFO("cut at " << n);
        CHECK_FALSE(decode_gossip(plain.substr(0, n), nullptr));
    }
    CHECK_FALSE(decode_gossip(plain + "x", nullptr));
    // Flagged signed but too short to hold the header and the signature (found by the fuzzer: it
    // read past the end on a node without the secret).
    const std::string short_signed("DKG1\3\5" + std::string(44, '\0'), 50);
    CHECK_FALSE(decode_gossip(short_signed, nullptr));
    CHECK_FALSE(decode_gossip(short_signed, &key));
    // An incarnation so high that the view's epoch would wrap (found by the fuzzer).
    auto huge = sample(gossip_kind::gossip);
    huge.records[0].incarnation = max_incarnation + 1;
    CHECK_FALSE(decode_gossip(encode(huge, nullptr), nullptr));
    huge.records[0].incarnation = max_incarnation;
    CHECK(decode_gossip(encode(huge, nullptr), nullptr));
    auto bad_state = plain;
    bad_state[bad_state.size() - 18] = 9;  // the last record's state byte (17 bytes after it)
    CHECK_FALSE(decode_gossip(bad_state, nullptr));
}

TEST_CASE("a map reply carries the epoch, the nodes and the slot table, and nothing malformed reads") {
    std::vector<node> nodes{{1, "10.0.0.1", 7001, node_state::member, 7501},
                            {2, "host.example", 7002, node_state::member, 0},
                            {3, "::1", 7003, node_state::suspect, 0},
                            {4, "10.0.0.4", 7004, node_state::failed, 0}};
    const auto placed = dynamic_backup(1).place(nodes);
    auto bytes = encode_map(42, nodes, placed);
    auto back = decode_map(bytes);
    REQUIRE(back);
    CHECK(back->epoch == 42);
    CHECK(back->nodes == nodes);
    bool same = true;
    for (std::size_t s = 0; s < slot_count; ++s) {
        const auto a = placed.holders(static_cast<slot_t>(s)), b = back->slots.holders(static_cast<slot_t>(s));
        same = same && std::equal(a.begin(), a.end(), b.begin(), b.end());
    }
    CHECK(same);
    CHECK(back->slots.holders(0).size() == 2);
    for (std::size_t n = 0; n < bytes.size(); n += (n < 200 || bytes.size() - n < 40000) ? 1 : 997)
        CHECK_FALSE(decode_map(bytes.substr(0, n)));
    CHECK_FALSE(decode_map(bytes + "x"));
    auto bad_state = bytes;
    bad_state[8 + 4 + 8 + 2 + 2] = 9;  // the first node's state
    CHECK_FALSE(decode_map(bad_state));

    // A slot table with unassigned slots, and what a table may not say.
    slot_table some;
    some.assign({0, 99}, {1, 2});
    some.assign({100, 199}, {2, 1});
    const auto sparse = encode_map(7, nodes, some);
    auto read = decode_map(sparse);
    REQUIRE(read);
    CHECK(read->slots.holders(5).front() == 1);
    CHECK(read->slots.holders(150).front() == 2);
    CHECK(read->slots.holders(200).empty());
    const std::size_t sets_at = sparse.size() - 2 * slot_count - (2 * (1 + 16)) - 4;
    auto stranger = sparse;
    stranger[sets_at + 4 + 1] = 9;  // the first set's first holder: node 9, not in the map
    CHECK_FALSE(decode_map(stranger));
    auto repeated = sparse;
    repeated.replace(sets_at + 4 + 17, 17, sparse.substr(sets_at + 4, 17));  // the second set as the first
    CHECK_FALSE(decode_map(repeated));
    auto no_such_set = sparse;
    no_such_set[sparse.size() - 2] = 3;  // the last slot names set 3 of 2
    CHECK_FALSE(decode_map(no_such_set));

    // A count far above what the bytes could hold is refused before anything is reserved.
    auto huge = encode_map(1, {}, slot_table{});
    huge[8] = '\xff';
    huge[11] = '\x7f';
    CHECK_FALSE(decode_map(huge));
}
