#include <catch2/catch.hpp>

#include <dhtkit/store/stable_hash.hpp>

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
