#include <catch2/catch.hpp>

#include <dhtkit/store/checksum.hpp>
#include <dhtkit/store/stable_hash.hpp>

#include <algorithm>
#include <string>

// Reference values of xxHash64 with seed 0, as published with the algorithm: if these change,
// every key in every deployed cluster would move to another peer.
TEST_CASE("stable_hash is xxHash64 with seed 0, bit for bit") {
    CHECK(dhtkit::stable_hash("") == 0xEF46DB3751D8E999ull);
    CHECK(dhtkit::stable_hash("a") == 0xD24EC4F1A98C6E5Bull);
    CHECK(dhtkit::stable_hash("abc") == 0x44BC2CF5AD770999ull);
}

TEST_CASE("stable_hash depends on every byte") {
    CHECK(dhtkit::stable_hash("key-1") != dhtkit::stable_hash("key-2"));
    CHECK(dhtkit::stable_hash(std::string_view("a\0b", 3)) != dhtkit::stable_hash("a"));
}

TEST_CASE("a checksum fed in uneven blocks equals XXH3-64 of the whole, whichever code computes it") {
    std::string data(3'000'000, '\0');
    std::uint64_t x = 88172645463325252ull;
    for (auto& c : data) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        c = static_cast<char>(x);
    }
    dhtkit::checksum_stream s;
    for (std::size_t at = 0, step = 1; at < data.size(); at += step, step = step * 3 + 7)
        s.update(data.data() + at, std::min(step, data.size() - at));
    CHECK(s.digest() == XXH3_64bits(data.data(), data.size()));
}
