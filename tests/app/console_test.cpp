// The console's line splitting: lines as they come, in any pieces, each byte looked at once.
#include <catch2/catch.hpp>

#include <dhtkit/app/console.hpp>

#include <string>
#include <vector>

using namespace dhtkit;

TEST_CASE("lines are cut as they come, in any pieces, a CR before the newline dropped") {
    line_splitter s;
    std::vector<std::string> got;
    auto take = [&](std::string l) { got.push_back(std::move(l)); };
    s.feed("put a 1\r\nget", take);
    s.feed(" a\n\nsta", take);
    s.feed("ts", take);
    CHECK(got == std::vector<std::string>{"put a 1", "get a", ""});
    CHECK(s.has_rest());
    CHECK(s.take_rest() == "stats");
    CHECK_FALSE(s.has_rest());
}

TEST_CASE("a line of 8 MB read 4 KiB at a time is looked at once, not once per read") {
    line_splitter s;
    const std::string piece(4096, 'v');
    std::size_t lines = 0, length = 0;
    auto take = [&](const std::string& l) {
        ++lines;
        length = l.size();
    };
    s.feed("put big ", take);
    constexpr std::size_t pieces = 2048;  // 8 MiB
    for (std::size_t i = 0; i < pieces; ++i) s.feed(piece, take);
    s.feed("\n", take);
    CHECK(lines == 1);
    CHECK(length == 8 + pieces * piece.size());
    // Every byte once: rescanning what was pending on each read looked at ~pieces^2 / 2 pieces.
    CHECK(s.examined() == 8 + pieces * piece.size() + 1);
}
