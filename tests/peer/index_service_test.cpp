#include <catch2/catch.hpp>

#include <dhtkit/peer/index_service.hpp>

using namespace dhtkit;
using namespace dhtkit::protocol;

namespace {

struct harness {
    locked_table<std::string, std::string> keys, files;
    index_service<locked_table<std::string, std::string>> service{keys, files};

    frame_view ask(opcode op, std::string_view key, std::string_view value = {}) {
        out.clear();
        service.handle({{op, 0, status::ok, ++id, 0, 0}, key, value}, out);
        frame_reader r({1024, 1 << 20});
        r.feed(out);
        frame_view f;
        REQUIRE(r.next(f) == frame_reader::result::frame);
        REQUIRE(f.h.request_id == id);
        REQUIRE(r.buffered() == 0);
        answer = std::string(f.value);
        f.value = answer;
        return f;
    }
    std::string out, answer;
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
    CHECK(h.ask(opcode::unregister_file, "f", encode_u32(2)).h.code == status::ok);
    CHECK(h.ask(opcode::unregister_file, "f", encode_u32(2)).h.code == status::not_found);
    CHECK(h.ask(opcode::unregister_file, "f", encode_u32(1)).h.code == status::ok);
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
