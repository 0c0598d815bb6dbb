// The lease keeper against a grantor of the test's own, which speaks our frames: a grant counts
// only after a catch-up in which the grantor's own stream was complete. A grantor forgets that a
// holder is "behind" when it is asked for its stream, not when the stream arrives; a holder whose
// stream from it broke off would otherwise vouch for a copy that lacks what that grantor
// acknowledged without it (nemesis, majority/dynamic).
#include <catch2/catch.hpp>

#include <dhtkit/cluster/lease_keeper.hpp>
#include <dhtkit/protocol/codec.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace dhtkit;
using namespace std::chrono_literals;

namespace {

// Answers hello with ok, and each lease request with "unavailable" (behind) the first time, a
// 300 ms grant after that. On its own thread until destroyed.
// `dies_after_first`: the first lease request is granted for 2 s, then the grantor closes its
// connections and its port (a killed process).
// `follows`: non-zero, the grantor follows the map of that placement digest: it answers `moved`
// to a request under another map and grants every request under its own.
class scripted_grantor {
public:
    explicit scripted_grantor(bool dies_after_first = false, std::uint64_t follows = 0)
        : listener_(net::tcp_listener::bind(net::endpoint::parse("127.0.0.1:0"))),
          port_(listener_->local().port()), dies_after_first_(dies_after_first), follows_(follows) {
        thread_ = std::thread([this] { serve(); });
    }
    ~scripted_grantor() {
        stopping_ = true;
        thread_.join();
    }
    [[nodiscard]] std::uint16_t port() const { return port_; }
    [[nodiscard]] int lease_requests() const { return leases_.load(); }
    [[nodiscard]] int refused_for_map() const { return refused_for_map_.load(); }

private:
    void serve() {
        std::vector<net::tcp_stream> open;
        std::vector<protocol::frame_reader> readers;
        while (!stopping_) {
            if (!listener_) {
                std::this_thread::sleep_for(1ms);
                continue;
            }
            if (auto s = listener_->try_accept()) {
                open.push_back(std::move(*s));
                readers.emplace_back(protocol::limits{});
            }
            for (std::size_t i = 0; i < open.size(); ++i) {
                std::array<std::byte, 4096> buf;
                auto in = open[i].receive_some(buf);
                if (!in || in.bytes == 0) continue;
                readers[i].feed({reinterpret_cast<const char*>(buf.data()), in.bytes});
                protocol::frame_view f;
                while (readers[i].next(f) == protocol::frame_reader::result::frame) {
                    std::string out;
                    protocol::header h{f.h.op, 0, protocol::status::ok, f.h.request_id, 0, 0};
                    if (f.h.op == protocol::opcode::lease && dies_after_first_) {
                        leases_.fetch_add(1);
                        protocol::append_frame(out, h, {}, protocol::encode_u64(2000));
                        (void)open[i].send_all(std::as_bytes(std::span(out)), 1s);
                        open.clear();
                        readers.clear();
                        listener_.reset();
                        break;
                    }
                    if (f.h.op == protocol::opcode::lease && follows_) {
                        leases_.fetch_add(1);
                        const auto ask = protocol::decode_lease_request(f.value);
                        if (ask && ask->map == follows_) {
                            protocol::append_frame(out, h, {}, protocol::encode_u64(300));
                        } else {
                            refused_for_map_.fetch_add(1);
                            h.code = protocol::status::moved;
                            protocol::append_frame(out, h, {}, "another map");
                        }
                    } else if (f.h.op == protocol::opcode::lease && leases_.fetch_add(1) == 0) {
                        h.code = protocol::status::unavailable;
                        protocol::append_frame(out, h, {}, "behind: catch up first");
                    } else if (f.h.op == protocol::opcode::lease) {
                        protocol::append_frame(out, h, {}, protocol::encode_u64(300));
                    } else {
                        protocol::append_frame(out, h, {}, {});
                    }
                    (void)open[i].send_all(std::as_bytes(std::span(out)), 1s);
                }
            }
            std::this_thread::sleep_for(1ms);  // a polling server with a bound, not a synchronisation
        }
    }

    std::optional<net::tcp_listener> listener_;
    std::uint16_t port_;
    bool dies_after_first_;
    std::uint64_t follows_;
    std::atomic<int> refused_for_map_{0};
    std::atomic<bool> stopping_{false};
    std::atomic<int> leases_{0};
    std::thread thread_;
};

}  // namespace

TEST_CASE("a grant counts only after a catch-up that got the grantor's whole stream") {
    scripted_grantor grantor;
    const node_id self = 1, other = 2;
    lease_holdings held({other});
    std::atomic<int> catch_ups{0};
    std::atomic<bool> valid_before_second{false};
    // The first catch-up's stream from the grantor breaks off; the second is whole.
    lease_keeper keeper(self, held, protocol::limits{}, protocol::hello_request{}, lease_options{},
                        [&](node_id id, bool ask_it, const std::function<void()>& waiting) {
                            CHECK(id == other);
                            CHECK(ask_it);
                            waiting();
                            const int n = ++catch_ups;
                            if (n == 2 && held.valid(other)) valid_before_second = true;
                            return n >= 2;
                        });
    keeper.start({node{other, "127.0.0.1", grantor.port(), node_state::member}});
    const auto until = std::chrono::steady_clock::now() + 10s;
    while (!held.valid(other) && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(5ms);
    const int at_first_valid = catch_ups.load();
    keeper.stop();
    CHECK(held.valid(other));  // granted in the end
    CHECK(at_first_valid >= 2);  // not on the grant after the broken stream
    CHECK_FALSE(valid_before_second);
    CHECK(grantor.lease_requests() >= 3);  // behind, the grant after the broken stream, the one that counts
}

TEST_CASE("a grantor that stops answering is asked again as its lease runs out, not a round later") {
    scripted_grantor grantor(/*dies_after_first=*/true);
    const node_id self = 1, other = 2;
    lease_holdings held({other});
    // Rounds longer than half a term: the round after the failed one would come 1 s after the lapse.
    lease_options opt;
    opt.term = 2000ms;
    opt.renew_every = 1500ms;
    std::atomic<std::chrono::steady_clock::rep> caught_up_at{0};
    lease_keeper keeper(self, held, protocol::limits{}, protocol::hello_request{}, opt,
                        [&](node_id, bool ask_it, const std::function<void()>& waiting) {
                            if (!ask_it) {  // the lease lapsed and the grantor is not there
                                waiting();
                                caught_up_at = std::chrono::steady_clock::now().time_since_epoch().count();
                            }
                            return true;
                        });
    keeper.start({node{other, "127.0.0.1", grantor.port(), node_state::member}});
    const auto give_up = std::chrono::steady_clock::now() + 20s;
    while (!held.valid(other) && std::chrono::steady_clock::now() < give_up) std::this_thread::sleep_for(5ms);
    REQUIRE(held.valid(other));
    const auto lapses_at = held.valid_until(other);
    while (caught_up_at.load() == 0 && std::chrono::steady_clock::now() < give_up) std::this_thread::sleep_for(5ms);
    keeper.stop();
    REQUIRE(caught_up_at.load() != 0);
    const auto late = std::chrono::steady_clock::time_point(std::chrono::steady_clock::duration(caught_up_at.load())) - lapses_at;
    CHECK(late >= 0ms);  // never while the lease ran
    CHECK(late < 700ms);  // the next round was due 1 s after the lapse
    CHECK(held.excused(other));  // writes go on without it
    CHECK(grantor.lease_requests() == 1);
}

TEST_CASE("a grantor on another map grants nothing until this node's map agrees, and is asked again as soon as it does") {
    const std::uint64_t old_map = 0x1111, new_map = 0x2222;
    scripted_grantor grantor(/*dies_after_first=*/false, /*follows=*/new_map);
    const node_id self = 1, other = 2;
    lease_holdings held({other});
    lease_options opt;
    opt.renew_every = 5000ms;  // the next round would come long after the map changes
    std::atomic<std::uint64_t> following{old_map};
    std::atomic<int> catch_ups{0};
    lease_keeper keeper(
        self, held, protocol::limits{}, protocol::hello_request{}, opt,
        [&](node_id, bool, const std::function<void()>&) {
            ++catch_ups;
            return true;
        },
        {}, [&] { return following.load(); });
    keeper.start({node{other, "127.0.0.1", grantor.port(), node_state::member}});
    keeper.wait_first_answers(10s);
    REQUIRE(grantor.refused_for_map() == 1);
    CHECK_FALSE(held.valid(other));
    CHECK_FALSE(held.excused(other));  // it answers: it may act on its map, so nothing excuses it
    CHECK(catch_ups.load() == 0);      // nor is this node behind it
    const auto changed_at = std::chrono::steady_clock::now();
    following = new_map;
    keeper.renew_now();
    const auto give_up = changed_at + 10s;
    while (!held.valid(other) && std::chrono::steady_clock::now() < give_up) std::this_thread::sleep_for(5ms);
    const auto granted_after = std::chrono::steady_clock::now() - changed_at;
    keeper.stop();
    REQUIRE(held.valid_until(other) > changed_at);
    const auto while_current = held.valid_until(other) - 1ms;  // a moment the lease surely ran
    CHECK(held.valid(other, while_current, new_map));
    CHECK_FALSE(held.valid(other, while_current, old_map));  // it counts under the new map only
    CHECK(granted_after < 2500ms);  // not at the next round, 5 s on
    CHECK(catch_ups.load() == 0);   // it never lapsed: nothing was acknowledged without this node
    CHECK(grantor.lease_requests() == 2);
}
