// The dispatchers' lifecycle where a worker once aborted on SIGCONT (epoll_ctl(modify) on a
// descriptor no longer watched, after a resume reached a connection that had closed): a reply is
// held, its client leaves, and the reply is released from another thread before, while or after
// it does. A re-arm of a closed connection would throw and end the process; every connection must
// end up closed, once.
#include <catch2/catch.hpp>

#include <dhtkit/peer/dispatch.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

using namespace dhtkit;
using namespace std::chrono_literals;

namespace {

std::int64_t open_connections(const peer_stats& stats) {
    const auto text = stats.report(0, 0);
    const std::string_view name = "\nconnections_open=";
    auto at = text.find(name);
    return std::stoll(text.substr(at + name.size()));
}

template <class F>
bool within(std::chrono::milliseconds limit, F&& done) {
    auto until = std::chrono::steady_clock::now() + limit;
    while (!done()) {
        if (std::chrono::steady_clock::now() > until) return false;
        std::this_thread::yield();
    }
    return true;
}

}  // namespace

TEST_CASE("a held reply released after its client left closes the connection once and re-arms nothing") {
    auto model = GENERATE(dispatch_model::loop, dispatch_model::pool);
    net::epoll_reactor listener_loop;
    std::thread loop([&] { listener_loop.run(); });
    peer_stats stats;
    std::mutex held_mutex;
    std::vector<std::pair<connection_ptr, std::shared_ptr<held_reply>>> held;  // guarded by held_mutex
    // A serve function shaped like the router's: hold the reply of whatever arrives.
    serve_fn serve = [&](connection& c) {
        if (c.held()) return next_step::park;
        c.settle();
        if (c.flush() == connection::flush_result::failed) return next_step::close;
        std::array<std::byte, 256> buf;
        auto in = c.stream.receive_some(buf);
        if (!in) return next_step::close;
        if (in.bytes == 0) return next_step::wait;
        c.begin_batch();
        auto h = c.hold();
        {
            std::lock_guard lock(held_mutex);
            held.emplace_back(c.shared_from_this(), h);
        }
        return c.end_batch() ? next_step::park : next_step::wait;
    };
    // The listener loop stops before the dispatcher goes, as in a peer: pool dispatch hands ready
    // connections from that loop to its pool. Declared after the dispatcher, so destroyed first,
    // on every way out of the block.
    struct stops_loop {
        net::epoll_reactor& loop;
        std::thread& thread;
        ~stops_loop() {
            loop.stop();
            if (thread.joinable()) thread.join();
        }
    };
    {
        any_dispatch<net::epoll_reactor, thread_pool> dispatch(model, listener_loop, 2, {64, 1024}, std::chrono::milliseconds(0), serve, stats);
        stops_loop loop_first{listener_loop, loop};
        auto listener = net::tcp_listener::bind(net::endpoint::parse("127.0.0.1:0"));
        std::mt19937 rng(7);
        for (int round = 0; round < 200; ++round) {
            auto client = net::tcp_stream::connect(listener.local(), 2s);
            std::optional<net::tcp_stream> accepted;
            REQUIRE(within(2000ms, [&] { return (accepted = listener.try_accept()).has_value(); }));
            dispatch.adopt(std::move(*accepted));
            std::byte one{1};
            REQUIRE(client.send_all({&one, 1}, 2s).ok());
            REQUIRE(within(2000ms, [&] {
                std::lock_guard lock(held_mutex);
                return !held.empty();
            }));
            std::pair<connection_ptr, std::shared_ptr<held_reply>> h;
            {
                std::lock_guard lock(held_mutex);
                h = std::move(held.back());
                held.clear();
            }
            h.second->frame = "reply";
            // The client leaves before, or while, or after the reply is released.
            const int order = static_cast<int>(rng() % 3);
            if (order == 0) client.close();
            std::thread releaser([c = h.first] { c->release(); });
            if (order == 1) client.close();
            releaser.join();
            if (order == 2) client.close();
        }
        CHECK(within(5000ms, [&] { return open_connections(stats) == 0; }));
        listener_loop.stop();
        loop.join();
        dispatch.stop();
    }
    CHECK(open_connections(stats) == 0);
}
