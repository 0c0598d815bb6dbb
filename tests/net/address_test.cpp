#include <catch2/catch.hpp>

#include <dhtkit/net/address.hpp>

using dhtkit::net::endpoint;

TEST_CASE("endpoints parse IPv4 and IPv6 host:port text and print it back") {
    auto v4 = endpoint::parse("127.0.0.1:7400");
    CHECK(v4.family() == AF_INET);
    CHECK(v4.port() == 7400);
    CHECK(v4.to_string() == "127.0.0.1:7400");

    auto v6 = endpoint::parse("[::1]:80");
    CHECK(v6.family() == AF_INET6);
    CHECK(v6.port() == 80);
    CHECK(v6.to_string() == "[::1]:80");

    CHECK(endpoint::parse("localhost:9").port() == 9);
}

TEST_CASE("malformed addresses are refused with a message naming the text and what was expected") {
    CHECK_THROWS_WITH(endpoint::parse("127.0.0.1"), Catch::Contains("'127.0.0.1'") && Catch::Contains("host:port"));
    CHECK_THROWS_WITH(endpoint::parse("127.0.0.1:70000"), Catch::Contains("0 to 65535"));
    CHECK_THROWS_WITH(endpoint::parse("127.0.0.1:12a"), Catch::Contains("0 to 65535"));
    CHECK_THROWS_WITH(endpoint::parse("[::1:80"), Catch::Contains("[ipv6]:port"));
    CHECK_THROWS_AS(endpoint::from_numeric("not-an-ip", 1), std::invalid_argument);
}

TEST_CASE("split reads HOST:PORT and [v6]:PORT, and says what it expected otherwise") {
    auto a = endpoint::split("peer-3.example:7400");
    CHECK(a.host == "peer-3.example");
    CHECK(a.port == 7400);
    auto b = endpoint::split("[::1]:65535");
    CHECK(b.host == "::1");
    CHECK(b.port == 65535);
    CHECK_THROWS_WITH(endpoint::split("no-port"), Catch::Contains("expected 'host:port'"));
    CHECK_THROWS_WITH(endpoint::split("h:65536"), Catch::Contains("port from 0 to 65535"));
    CHECK_THROWS_WITH(endpoint::split("[::1]7400"), Catch::Contains("[ipv6]:port"));
}
