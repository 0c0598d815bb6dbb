#include <catch2/catch.hpp>

#include <dhtkit/protocol/codec.hpp>
#include <dhtkit/protocol/messages.hpp>

#include <random>

using namespace dhtkit::protocol;

TEST_CASE("a header encodes to fixed little-endian bytes and decodes back") {
    header h{opcode::get, 0x5a, status::not_found, 0x0102030405060708ull, 3, 0x10203};
    std::array<std::byte, header_size> bytes;
    encode(h, bytes);
    CHECK(bytes[0] == std::byte{0xD7});
    CHECK(bytes[1] == std::byte{0x4B});
    CHECK(bytes[3] == std::byte{3});
    CHECK(bytes[8] == std::byte{0x08});   // request id, least significant byte first
    CHECK(bytes[15] == std::byte{0x01});
    CHECK(bytes[20] == std::byte{0x03});  // value length 0x10203
    CHECK(bytes[22] == std::byte{0x01});
    auto d = decode(bytes, {16, 1 << 20});
    REQUIRE(d.error == header_error::none);
    CHECK(d.h.op == opcode::get);
    CHECK(d.h.flags == 0x5a);
    CHECK(d.h.code == status::not_found);
    CHECK(d.h.request_id == h.request_id);
    CHECK(d.h.key_length == 3);
    CHECK(d.h.value_length == 0x10203);
}

TEST_CASE("limits, magic, version and reserved bytes are checked before any payload is read") {
    std::array<std::byte, header_size> bytes;
    encode({opcode::put, 0, status::ok, 1, 100, 10}, bytes);
    CHECK(decode(bytes, {99, 1000}).error == header_error::key_too_large);
    CHECK(decode(bytes, {100, 9}).error == header_error::value_too_large);
    CHECK(decode(bytes, {100, 10}).error == header_error::none);
    auto bad = bytes;
    bad[0] = std::byte{'G'};
    CHECK(decode(bad, {}).error == header_error::bad_magic);
    bad = bytes;
    bad[2] = std::byte{9};
    CHECK(decode(bad, {}).error == header_error::bad_version);
    bad = bytes;
    bad[7] = std::byte{1};
    CHECK(decode(bad, {}).error == header_error::bad_reserved);
}

TEST_CASE("the frame reader reassembles frames split at every byte boundary") {
    std::string stream;
    for (int i = 0; i < 5; ++i)
        append_frame(stream, {opcode::put, 0, status::ok, static_cast<std::uint64_t>(i), 0, 0},
                     "key" + std::to_string(i), std::string(static_cast<std::size_t>(i) * 7, 'v'));
    for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
        frame_reader r({64, 1024});
        std::vector<std::uint64_t> ids;
        frame_view f;
        auto drain = [&] {
            while (r.next(f) == frame_reader::result::frame) {
                ids.push_back(f.h.request_id);
                REQUIRE(f.key == "key" + std::to_string(f.h.request_id));
                REQUIRE(f.value.size() == f.h.request_id * 7);
            }
        };
        r.feed(std::string_view(stream).substr(0, cut));
        drain();
        r.feed(std::string_view(stream).substr(cut));
        drain();
        REQUIRE(ids == std::vector<std::uint64_t>{0, 1, 2, 3, 4});
        REQUIRE(r.buffered() == 0);
    }
}

TEST_CASE("random bytes never make the reader crash, stall on a whole frame, or buffer past its limit") {
    std::mt19937 rng(7);
    for (int round = 0; round < 2000; ++round) {
        frame_reader r({32, 256});
        std::string junk(rng() % 200, '\0');
        for (auto& c : junk) c = static_cast<char>(rng());
        if (round % 2) junk.replace(0, std::min<std::size_t>(2, junk.size()), "\xD7\x4B");
        r.feed(junk);
        frame_view f;
        frame_reader::result res;
        while ((res = r.next(f)) == frame_reader::result::frame) {
            REQUIRE(f.key.size() <= 32);
            REQUIRE(f.value.size() <= 256);
        }
        if (res == frame_reader::result::need_more) REQUIRE(r.buffered() < header_size + 32 + 256);
    }
}

TEST_CASE("holder lists and file metadata round-trip, and malformed ones are refused") {
    std::vector<holder> hs{{1, "127.0.0.1", 7401, 1234, 0xabcdefull}, {2, "::1", 9, 0, 1}};
    auto bytes = encode_holders(hs);
    CHECK(decode_holders(bytes) == hs);
    CHECK(decode_holders("") == std::vector<holder>{});
    const std::size_t first = 8 + 2 + 2 + 9 + 8 + 8;  // the first record alone is a valid list
    for (std::size_t cut = 1; cut < bytes.size(); ++cut)
        CHECK(decode_holders(bytes.substr(0, cut)).has_value() == (cut == first));
    auto meta = encode(file_meta{42, 7});
    CHECK(decode_file_meta(meta)->size == 42);
    CHECK_FALSE(decode_file_meta(meta + "x"));
    CHECK(decode_u64(encode_u64(77)) == 77u);
    CHECK_FALSE(decode_u64("abc"));
}

TEST_CASE("a sync request names the asker and slot ranges, and malformed ones are refused") {
    sync_request ask{42, {{0, 5460}, {10923, 16383}}};
    auto bytes = encode(ask);
    auto back = decode_sync_request(bytes);
    REQUIRE(back);
    CHECK(back->asker == 42);
    CHECK(back->ranges == ask.ranges);
    CHECK_FALSE(decode_sync_request(bytes.substr(0, 7)));   // no asker
    CHECK_FALSE(decode_sync_request(bytes.substr(0, 10)));  // half a range
    CHECK_FALSE(decode_sync_request(encode(sync_request{1, {{9, 3}}})));  // first after last
}

TEST_CASE("a frame of another protocol version is refused with a reason that names ours") {
    std::string bytes;
    append_frame(bytes, {opcode::get, 0, status::ok, 1, 0, 0}, "k", {});
    bytes[2] = 1;  // version 1, the protocol before slots
    frame_reader r({64, 1024});
    r.feed(bytes);
    frame_view f;
    REQUIRE(r.next(f) == frame_reader::result::error);
    CHECK(r.last_error() == header_error::bad_version);
    CHECK_THAT(std::string(to_string(r.last_error())), Catch::Contains("version 2"));
}

TEST_CASE("a reader gives its memory back once everything buffered was consumed") {
    frame_reader r({64, 1 << 20});
    std::string big;
    append_frame(big, {opcode::put, 0, status::ok, 1, 0, 0}, "k", std::string(100000, 'v'));
    r.feed(big.substr(0, 50000));
    r.release_if_empty();
    CHECK(r.buffered() == 50000);  // a partial frame is kept
    r.feed(big.substr(50000));
    frame_view f;
    REQUIRE(r.next(f) == frame_reader::result::frame);
    CHECK(f.value.size() == 100000);
    CHECK(r.reserved_bytes() >= 100000);
    r.release_if_empty();
    CHECK(r.reserved_bytes() <= 4096);
}

TEST_CASE("a sync request carries the asker's slot digests when it has some") {
    using namespace dhtkit::protocol;
    sync_request plain{7, {{0, 3}, {10, 10}}};
    auto back = decode_sync_request(encode(plain));
    REQUIRE(back);
    CHECK(back->ranges == plain.ranges);
    CHECK(back->digests.empty());

    sync_request with{7, {{0, 3}, {10, 10}}, {1, 2, 3, 4, 5}};
    auto bytes = encode(with);
    auto d = decode_sync_request(bytes, true);
    REQUIRE(d);
    CHECK(d->ranges == with.ranges);
    CHECK(d->digests == with.digests);
    CHECK_FALSE(decode_sync_request(bytes.substr(0, bytes.size() - 1), true));  // a digest short
    CHECK_FALSE(decode_sync_request(bytes + "x", true));                        // bytes after the last
}

TEST_CASE("a lease request names the asker and the placement of its map, and malformed ones are refused") {
    using namespace dhtkit::protocol;
    const auto both = encode(lease_request{7, 0xabcdef});
    CHECK(both.size() == 16);
    auto back = decode_lease_request(both);
    REQUIRE(back);
    CHECK(back->asker == 7);
    CHECK(back->map == 0xabcdef);
    auto id_only = decode_lease_request(encode_u64(9));  // an id alone: no map in particular
    REQUIRE(id_only);
    CHECK(id_only->asker == 9);
    CHECK(id_only->map == 0);
    CHECK_FALSE(decode_lease_request(both.substr(0, 12)));
    CHECK_FALSE(decode_lease_request(both + "x"));
    CHECK_FALSE(decode_lease_request(""));
}
