// Slots are Redis Cluster's, to the bit: a RESP front and Redis cluster clients rely on it.
#include <catch2/catch.hpp>

#include <dhtkit/cluster/slots.hpp>

using namespace dhtkit;

TEST_CASE("CRC16 is the XMODEM variant Redis Cluster uses") {
    CHECK(crc16("123456789") == 0x31C3);  // the check value of CRC16-CCITT/XMODEM, and Redis's test
    CHECK(crc16("") == 0);
}

TEST_CASE("a key's slot is the one Redis computes") {
    // Values from Redis's CLUSTER KEYSLOT.
    CHECK(key_slot("foo") == 12182);
    CHECK(key_slot("bar") == 5061);
    CHECK(key_slot("hello") == 866);
    CHECK(key_slot("") == 0);
    for (const char* k : {"a", "key:1", "\xff\xfe", "{"}) CHECK(key_slot(k) < slot_count);
}

TEST_CASE("keys that share a hash tag share a slot, exactly by Redis's rule") {
    CHECK(key_slot("{user1}.a") == key_slot("{user1}.b"));
    CHECK(key_slot("{user1}.a") == key_slot("user1"));
    CHECK(hash_tag("foo{bar}baz") == "bar");
    CHECK(hash_tag("foo{}{bar}") == "foo{}{bar}");  // an empty first tag: the whole key is hashed
    CHECK(hash_tag("foo{{bar}}zap") == "{bar");     // from the first '{' to the first '}' after it
    CHECK(hash_tag("foo{bar}{zap}") == "bar");      // only the first tag counts
    CHECK(hash_tag("no tag}{") == "no tag}{");      // a '}' before the '{' does not close it
    CHECK(hash_tag("{open") == "{open");
}

TEST_CASE("a slot range contains its ends") {
    slot_range r{10, 20};
    CHECK(r.contains(10));
    CHECK(r.contains(20));
    CHECK_FALSE(r.contains(21));
    CHECK_FALSE(r.contains(9));
}
