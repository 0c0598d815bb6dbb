#include <catch2/catch.hpp>

#include <dhtkit/protocol/resp.hpp>

#include <string>
#include <vector>

using namespace dhtkit::protocol;

namespace {

// Every command the reader takes from `bytes`, fed `step` bytes at a time; "error: ..." at the end
// when it stopped on one.
std::vector<std::vector<std::string>> read_commands(std::string_view bytes, std::size_t step, resp_limits lim = {}) {
    resp_reader r(lim);
    std::vector<std::vector<std::string>> out;
    std::vector<std::string_view> args;
    for (std::size_t at = 0; at < bytes.size(); at += step) {
        r.feed(bytes.substr(at, step));
        for (;;) {
            auto res = r.next(args);
            if (res == resp_reader::result::need_more) break;
            if (res == resp_reader::result::error) {
                out.push_back({"error: " + r.last_error()});
                return out;
            }
            out.emplace_back(args.begin(), args.end());
        }
    }
    return out;
}

}  // namespace

TEST_CASE("RESP arrays and inline commands read the same however the bytes arrive") {
    const std::string bytes =
        "*3\r\n$3\r\nSET\r\n$5\r\nk e y\r\n$0\r\n\r\n"
        "PING\r\n"
        "\r\n"
        "*0\r\n"
        "get \"a \\\"b\\\"\" 'c d'\n"
        "*2\r\n$4\r\nECHO\r\n$4\r\n\r\n\r\n\r\n";
    const std::vector<std::vector<std::string>> expected = {
        {"SET", "k e y", ""}, {"PING"}, {"get", "a \"b\"", "c d"}, {"ECHO", "\r\n\r\n"}};
    for (std::size_t step = 1; step <= bytes.size(); ++step) {
        INFO("fed " << step << " bytes at a time");
        CHECK(read_commands(bytes, step) == expected);
    }
}

TEST_CASE("RESP input over a limit or malformed is an error worded as Redis words it") {
    resp_limits lim;
    lim.max_bulk_bytes = 100;
    lim.max_arguments = 4;
    lim.max_command_bytes = 300;
    lim.max_inline_bytes = 50;
    auto first_error = [&](std::string_view bytes) {
        auto got = read_commands(bytes, bytes.size(), lim);
        return got.empty() ? std::string("none") : got.back().front();
    };
    CHECK(first_error("*2\r\n$3\r\nGET\r\n$101\r\n") == "error: Protocol error: invalid bulk length");
    CHECK(first_error("*5\r\n") == "error: Protocol error: invalid multibulk length");
    CHECK(first_error("*x\r\n") == "error: Protocol error: invalid multibulk length");
    CHECK(first_error("*1\r\n:1\r\n") == "error: Protocol error: expected '$', got ':'");
    CHECK(first_error("*1\r\n$-1\r\n") == "error: Protocol error: invalid bulk length");
    CHECK(first_error("*1\r\n$2\r\nabcd\r\n") == "error: Protocol error: bulk string not followed by CRLF");
    CHECK(first_error(std::string(51, 'a')) == "error: Protocol error: too big inline request");
    CHECK(first_error("SET 'a\r\n") == "error: Protocol error: unbalanced quotes in request");
    CHECK(first_error("*4\r\n$100\r\n" + std::string(100, 'a') + "\r\n$100\r\n" + std::string(100, 'b') +
                      "\r\n$100\r\n" + std::string(100, 'c') + "\r\n$1\r\nd\r\n") ==
          "error: Protocol error: command too large");
    // A claimed size is never allocated: what is kept is what arrived.
    resp_reader r(lim);
    r.feed("*2\r\n$3\r\nGET\r\n$100\r\nab");
    std::vector<std::string_view> args;
    CHECK(r.next(args) == resp_reader::result::need_more);
    CHECK(r.buffered() < 32);
    // What of a command has been read counts as buffered until the command is whole: the idle
    // clock and the bound before the password see a command sent half-way.
    resp_reader half(lim);
    half.feed("*3\r\n$3\r\nSET\r\n");
    CHECK(half.next(args) == resp_reader::result::need_more);
    CHECK(half.buffered() == 13);
    half.feed("$1\r\nk\r\n$1\r\nv\r\n*1\r\n$4\r\nPI");
    CHECK(half.next(args) == resp_reader::result::command);
    CHECK(half.buffered() == 10);
    CHECK(half.next(args) == resp_reader::result::need_more);
    CHECK(half.buffered() == 10);
    half.feed("NG\r\n");
    CHECK(half.next(args) == resp_reader::result::command);
    CHECK(half.buffered() == 0);
}
