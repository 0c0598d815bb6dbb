// The dispatchers and the pump, with fronts of the test's own.
//
// The lifecycle where a worker once aborted on SIGCONT (epoll_ctl(modify) on a descriptor no
// longer watched, after a resume reached a connection that had closed): a reply is held, its
// client leaves, and the reply is released from another thread before, while or after it does. A
// re-arm of a closed connection would throw and end the process; every connection must end up
// closed, once.
//
// And what the pump gives every front, shown with a line-echo front that knows nothing of it:
// pipelined requests answered in order, the password gate, a malformed request answered and the
// connection closed, a half-received request closed by the idle clock while an idle one stays.
#include <catch2/catch.hpp>

#include <dhtkit/peer/dispatch.hpp>
#include <dhtkit/peer/pump.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

using namespace dhtkit;
using namespace std::chrono_literals;

namespace {

// A figure of the stats, as a number.
std::int64_t figure_of(const peer_stats& stats, std::string_view name) {
    figures f;
    stats.report(f, 0, 0);
    const auto* v = f.find(name);
    return v ? std::stoll(figures::text(*v)) : -1;
}
std::int64_t open_connections(const peer_stats& stats) { return figure_of(stats, "connections_open"); }

template <class F>
bool within(std::chrono::milliseconds limit, F&& done) {
    auto until = std::chrono::steady_clock::now() + limit;
    while (!done()) {
        if (std::chrono::steady_clock::now() > until) return false;
        std::this_thread::yield();
    }
    return true;
}

// Every byte is a request, and its reply is held: the test releases it.
struct holding_front {
    struct session {
        std::size_t bytes = 0;
        void feed(std::string_view b, std::uint64_t) { bytes += b.size(); }
        parsed next(char& r) {
            if (bytes == 0) return parsed::need_more;
            --bytes;
            r = 1;
            return parsed::request;
        }
        [[nodiscard]] std::size_t buffered() const noexcept { return 0; }
        void release_if_empty() noexcept {}
    };
    using request = char;
    static constexpr bool stamps_arrivals = false;

    std::mutex held_mutex;
    std::vector<std::pair<connection_ptr, std::shared_ptr<held_reply>>> held;  // guarded by held_mutex

    [[nodiscard]] session open() const { return {}; }
    void malformed(session&, connection&) {}
    [[nodiscard]] bool needs_password(char) const noexcept { return false; }
    void unauthenticated(char, session&, connection&) {}
    void too_long_before_auth(session&, connection&) {}
    handled handle(char, session&, connection& c) {
        auto h = c.hold();
        std::lock_guard lock(held_mutex);
        held.emplace_back(c.shared_from_this(), h);
        return handled::next;
    }
    void finish(session&, connection&) noexcept {}
};
static_assert(front<holding_front>);

// Lines in, the same lines out. AUTH <password> and QUIT as their names say; a line over 64
// bytes breaks the protocol.
struct echo_front {
    struct session {
        std::string buffer;
        std::size_t start = 0;
        void feed(std::string_view b, std::uint64_t) { buffer.append(b); }
        parsed next(std::string& line) {
            const auto end = buffer.find('\n', start);
            if (end == std::string::npos) return buffer.size() - start > 64 ? parsed::error : parsed::need_more;
            line.assign(buffer, start, end - start);
            start = end + 1;
            return line.size() > 64 ? parsed::error : parsed::request;
        }
        [[nodiscard]] std::size_t buffered() const noexcept { return buffer.size() - start; }
        void release_if_empty() {
            if (start != buffer.size()) return;
            std::string().swap(buffer);
            start = 0;
        }
    };
    using request = std::string;
    static constexpr bool stamps_arrivals = false;

    std::atomic<int> answered{0};

    [[nodiscard]] session open() const { return {}; }
    void malformed(session&, connection& c) { c.out += "ERR line too long\n"; }
    [[nodiscard]] bool needs_password(const request& r) const { return !r.starts_with("AUTH "); }
    void unauthenticated(const request&, session&, connection& c) { c.out += "NOAUTH\n"; }
    void too_long_before_auth(session&, connection& c) { c.out += "TOO LONG\n"; }
    handled handle(const request& r, session&, connection& c) {
        answered.fetch_add(1, std::memory_order_relaxed);
        if (r.starts_with("AUTH ")) {
            c.authenticated = r == "AUTH secret";
            c.out += c.authenticated ? "OK\n" : "WRONG\n";
            return handled::next;
        }
        if (r == "QUIT") {
            c.out += "BYE\n";
            return handled::close;
        }
        c.out += r;
        c.out += '\n';
        return handled::next;
    }
    void finish(session&, connection&) noexcept {}
};
static_assert(front<echo_front>);

// Stops the listener loop before the dispatcher goes, as in a peer: pool dispatch hands ready
// connections from that loop to its pool. Declared after the dispatcher, so destroyed first, on
// every way out of a block.
struct stops_loop {
    net::epoll_reactor& loop;
    std::thread& thread;
    ~stops_loop() {
        loop.stop();
        if (thread.joinable()) thread.join();
    }
};

// What a client reads until `want` bytes came, the peer closed, or 5 s passed without a byte.
std::string read_for(net::tcp_stream& s, std::size_t want) {
    std::string got;
    std::array<std::byte, 4096> buf;
    while (got.size() < want && s.wait_readable(5s)) {
        auto in = s.receive_some(std::span(buf).first(std::min(buf.size(), want - got.size())));
        if (!in || in.bytes == 0) break;
        got.append(reinterpret_cast<const char*>(buf.data()), in.bytes);
    }
    return got;
}

// True when the peer closed `s` (within 5 s), with nothing more to read.
bool sees_close(net::tcp_stream& s) {
    std::byte b;
    return s.receive_all({&b, 1}, 5s).status == net::io_status::closed;
}

}  // namespace

TEST_CASE("a held reply released after its client left closes the connection once and re-arms nothing") {
    auto model = GENERATE(dispatch_model::loop, dispatch_model::pool);
    net::epoll_reactor listener_loop;
    std::thread loop([&] { listener_loop.run(); });
    peer_stats stats;
    holding_front front;
    pump<holding_front> holding(front, {}, "");
    {
        any_dispatch<net::epoll_reactor, thread_pool> dispatch(model, listener_loop, 2, std::chrono::milliseconds(0), stats);
        stops_loop loop_first{listener_loop, loop};
        auto listener = net::tcp_listener::bind(net::endpoint::parse("127.0.0.1:0"));
        std::mt19937 rng(7);
        for (int round = 0; round < 200; ++round) {
            auto client = net::tcp_stream::connect(listener.local(), 2s);
            std::optional<net::tcp_stream> accepted;
            REQUIRE(within(2000ms, [&] { return (accepted = listener.try_accept()).has_value(); }));
            dispatch.adopt(std::move(*accepted), holding);
            std::byte one{1};
            REQUIRE(client.send_all({&one, 1}, 2s).ok());
            REQUIRE(within(2000ms, [&] {
                std::lock_guard lock(front.held_mutex);
                return !front.held.empty();
            }));
            std::pair<connection_ptr, std::shared_ptr<held_reply>> h;
            {
                std::lock_guard lock(front.held_mutex);
                h = std::move(front.held.back());
                front.held.clear();
            }
            h.second->answer.emplace(protocol::header{}, "reply");
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

TEST_CASE("every front gets the pump's order, gate, errors and idle clock") {
    auto model = GENERATE(dispatch_model::loop, dispatch_model::pool);
    net::epoll_reactor listener_loop;
    std::thread loop([&] { listener_loop.run(); });
    peer_stats stats;
    echo_front echo;
    pump<echo_front> lines(echo, {.max_in_flight = 4, .max_output_bytes = 1 << 16}, "secret");
    any_dispatch<net::epoll_reactor, thread_pool> dispatch(model, listener_loop, 2, std::chrono::milliseconds(300), stats);
    stops_loop loop_first{listener_loop, loop};
    auto listener = net::tcp_listener::bind(net::endpoint::parse("127.0.0.1:0"));
    auto connect = [&] {
        auto client = net::tcp_stream::connect(listener.local(), 2s);
        std::optional<net::tcp_stream> accepted;
        REQUIRE(within(2000ms, [&] { return (accepted = listener.try_accept()).has_value(); }));
        dispatch.adopt(std::move(*accepted), lines);
        return client;
    };
    auto send = [](net::tcp_stream& s, std::string_view text) {
        REQUIRE(s.send_all(std::as_bytes(std::span(text.data(), text.size())), 2s).ok());
    };

    SECTION("requests before the password are refused; after it, 100 pipelined lines come back in order") {
        auto c = connect();
        std::string script = "hello\nAUTH wrong\nstill no\nAUTH secret\n";
        std::string expected = "NOAUTH\nWRONG\nNOAUTH\nOK\n";
        for (int i = 0; i < 100; ++i) {  // batches of 4: served in turns, in order
            script += fmt::format("line {}\n", i);
            expected += fmt::format("line {}\n", i);
        }
        send(c, script);
        CHECK(read_for(c, expected.size()) == expected);
        send(c, "QUIT\nnot answered\n");
        CHECK(read_for(c, 4) == "BYE\n");
        CHECK(sees_close(c));
    }
    SECTION("a malformed request gets its error, then the connection closes; others are served") {
        auto bad = connect();
        auto good = connect();
        send(good, "AUTH secret\n");
        REQUIRE(read_for(good, 3) == "OK\n");
        send(bad, "AUTH secret\n" + std::string(100, 'x') + "\n");
        CHECK(read_for(bad, 21) == "OK\nERR line too long\n");
        CHECK(sees_close(bad));
        send(good, "still here\n");
        CHECK(read_for(good, 11) == "still here\n");
    }
    SECTION("half a request and silence is closed by the idle clock; a connection between requests stays") {
        auto idle = connect();
        auto half = connect();
        send(idle, "AUTH secret\n");
        REQUIRE(read_for(idle, 3) == "OK\n");
        send(half, "AUTH secret\nhalf a li");
        REQUIRE(read_for(half, 3) == "OK\n");
        CHECK(sees_close(half));
        CHECK(within(2000ms, [&] { return figure_of(stats, "connections_timed_out") == 1; }));
        send(idle, "still open\n");
        CHECK(read_for(idle, 11) == "still open\n");
    }
    listener_loop.stop();
    loop.join();
    dispatch.stop();
    CHECK(open_connections(stats) == 0);
}
