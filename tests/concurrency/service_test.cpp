#include <catch2/catch.hpp>

#include <dhtkit/concurrency/service.hpp>

#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using dhtkit::service_stack;

namespace {

// A part with a thread of its own, as the peer's are: stop() ends it, and is safe to repeat.
class worker {
public:
    worker(std::string name, std::vector<std::string>& stopped) : name_(std::move(name)), stopped_(stopped) {}
    ~worker() { stop(); }
    void start() {
        thread_ = std::jthread([](std::stop_token t) {
            while (!t.stop_requested()) std::this_thread::yield();
        });
    }
    void stop() {
        if (!thread_.joinable()) return;
        thread_.request_stop();
        thread_.join();
        stopped_.push_back(name_);
    }

private:
    std::string name_;
    std::vector<std::string>& stopped_;
    std::jthread thread_;
};
static_assert(dhtkit::service<worker>);

// An owner that starts its parts in order, noting each, and may fail after the second.
struct owner {
    std::vector<std::string> stopped;
    worker a{"a", stopped}, b{"b", stopped}, c{"c", stopped};
    service_stack running;  // last: destroyed first

    void start(bool fail_after_b) {
        a.start();
        running.started("a", a);
        b.start();
        running.started("b", b);
        if (fail_after_b) throw std::runtime_error("c cannot start");
        c.start();
        running.started("c", c);
    }
};

}  // namespace

TEST_CASE("a service stack stops its parts in the reverse of the order they started, once") {
    {
        owner o;
        o.start(false);
        CHECK(o.running.running() == std::vector<std::string>{"a", "b", "c"});
        o.running.stop_all();
        CHECK(o.stopped == std::vector<std::string>{"c", "b", "a"});
        CHECK(o.running.running().empty());
        o.running.stop_all();  // again: nothing left to stop
        CHECK(o.stopped.size() == 3);
        std::vector<std::string> order;
        service_stack plain;
        plain.started("first", [&] { order.push_back("first"); });
        plain.started("second", [&] { order.push_back("second"); });
        plain.stop_all();
        CHECK(order == std::vector<std::string>{"second", "first"});
    }
}

TEST_CASE("a start that throws half-way leaves the stack holding what started, stopped in reverse") {
    std::vector<std::string> seen;
    {
        auto o = std::make_unique<owner>();
        CHECK_THROWS_AS(o->start(true), std::runtime_error);
        CHECK(o->running.running() == std::vector<std::string>{"a", "b"});
        o->running.stop_all();
        seen = o->stopped;
    }
    CHECK(seen == std::vector<std::string>{"b", "a"});
    // An owner that goes without a stop: its stack, destroyed before its parts, stops them.
    std::vector<std::string> order;
    {
        service_stack s;
        s.started("x", [&] { order.push_back("x"); });
        s.started("y", [&] { order.push_back("y"); });
    }
    CHECK(order == std::vector<std::string>{"y", "x"});
}
