// A connection's outcomes: services record them in request order, a held reply takes its place
// among them when it is settled (a provisional one stands unless replaced, a stream-only hold adds
// nothing), a read refused after the fact is taken back, and the pump's output bound counts
// outcomes not yet rendered.
#include <catch2/catch.hpp>

#include <dhtkit/peer/connection.hpp>

#include <memory>
#include <string>
#include <thread>
#include <vector>

using namespace dhtkit;

namespace {

struct idle_pump final : any_pump {
    [[nodiscard]] std::unique_ptr<front_session> open() const override { return std::make_unique<front_session>(); }
    next_step serve(connection&) override { return next_step::wait; }
};

protocol::header reply_to(std::uint64_t id, protocol::status code = protocol::status::ok) {
    return {protocol::opcode::get, 0, code, id, 0, 0};
}

std::vector<std::string> values(connection& c) {
    std::vector<std::string> v;
    for (const auto& o : c.answers()) v.push_back(o.value);
    return v;
}

struct fixture {
    idle_pump pump;
    std::shared_ptr<connection> c = std::make_shared<connection>(net::tcp_stream{}, pump);
    int resumed = 0;
    fixture() {
        c->resume = [this](const connection_ptr&) { ++resumed; };
    }
};

}  // namespace

TEST_CASE("held replies take their places among the outcomes, in request order, when settled") {
    fixture f;
    auto& c = *f.c;
    c.begin_batch();
    c.answer(reply_to(1), "one");
    auto read = c.hold();                   // a quorum read: no outcome until it completes
    c.answer(reply_to(3), "three");
    c.answer(reply_to(4), "written");       // a write's provisional outcome...
    auto kept = std::make_shared<held_reply>();
    c.hold(kept, true);                     // ...that stands
    c.answer(reply_to(5), "written too");
    auto failed = std::make_shared<held_reply>();
    c.hold(failed, true);                   // ...and one its copies fail
    auto stream = c.hold();                 // a stream that says everything itself
    REQUIRE(c.end_batch());                 // four held: the connection parks

    std::thread other([&] {
        read->answer.emplace(reply_to(2), "two");
        failed->answer.emplace(reply_to(5, protocol::status::unavailable), "only 1 of the 3 holders applied the write");
        read.reset();
        failed.reset();
        f.c->release();
        f.c->release();
        f.c->release();
    });
    other.join();
    CHECK(f.resumed == 0);
    c.release();  // the stream's: the last one resumes the connection
    CHECK(f.resumed == 1);
    CHECK_FALSE(c.held());

    c.settle();
    CHECK(values(c) == std::vector<std::string>{"one", "two", "three", "written", "only 1 of the 3 holders applied the write"});
    std::vector<std::uint64_t> ids;
    for (const auto& o : c.answers()) ids.push_back(o.request_id);
    CHECK(ids == std::vector<std::uint64_t>{1, 2, 3, 4, 5});
    CHECK(c.answers().back().code == protocol::status::unavailable);
    c.clear_answers();
    CHECK(c.answers().empty());
}

TEST_CASE("a read taken back leaves the outcomes before it, and the output bound counts outcomes not rendered") {
    fixture f;
    auto& c = *f.c;
    c.answer(reply_to(1), std::string(1000, 'a'));
    CHECK(c.unsent() == 1000);
    const auto mark = c.answered();
    c.answer().assign(reply_to(2), std::string(500, 'b'));
    CHECK(c.unsent() == 1500);
    c.take_back(mark);  // its lease lapsed meanwhile: answered otherwise
    CHECK(c.unsent() == 1000);
    c.answer(reply_to(2, protocol::status::unavailable), "ask the next holder");
    CHECK(values(c) == std::vector<std::string>{std::string(1000, 'a'), "ask the next holder"});
    CHECK(c.unsent() == 1000 + 19);

    // Rendered (here as our frames, as the binary front does), the outcomes no longer count.
    for (const auto& o : c.answers()) append_frame(c.out, o);
    c.clear_answers();
    CHECK(c.unsent() == 2 * protocol::header_size + 1000 + 19);

    // An outcome is reused, its old key and value gone.
    auto& o = c.answer();
    CHECK(o.value.empty());
    CHECK(o.key.empty());
    CHECK(o.code == protocol::status::ok);
}
