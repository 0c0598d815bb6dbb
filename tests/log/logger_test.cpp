// The library's logger: each line with its level; a sink for the words alone still gets them all.
#include <catch2/catch.hpp>

#include <dhtkit/log/logger.hpp>

#include <string>
#include <utility>
#include <vector>

using namespace dhtkit;

TEST_CASE("a logger hands each line to its sink with its level; events are info") {
    std::vector<std::pair<log_level, std::string>> got;
    logger log([&](log_level l, std::string_view text) { got.emplace_back(l, std::string(text)); });
    log("caught up");
    log.warning("membership: peer 2 is failed");
    log.error("cannot write the log");
    log(log_level::debug, "detail");
    CHECK(got == std::vector<std::pair<log_level, std::string>>{{log_level::info, "caught up"},
                                                                 {log_level::warning, "membership: peer 2 is failed"},
                                                                 {log_level::error, "cannot write the log"},
                                                                 {log_level::debug, "detail"}});
    std::vector<std::string> words;
    logger plain([&](const std::string& line) { words.push_back(line); });
    plain.warning("refused");
    plain("joined");
    CHECK(words == std::vector<std::string>{"refused", "joined"});
    logger nowhere;
    CHECK_FALSE(nowhere);
    nowhere.error("dropped");  // no sink: nothing happens
    CHECK(log_level_named("warn") == log_level::warning);
    CHECK(log_level_named("loud") == std::nullopt);
    CHECK(to_string(log_level::warning) == "warning");
}
