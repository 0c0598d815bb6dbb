// The asking side of catch-up against a holder played by the test: a stream cut short does not
// count and is asked for again; the node serves once it has a whole stream.
#include <catch2/catch.hpp>

#include <dhtkit/cluster/replication.hpp>
#include <dhtkit/cluster/replicator.hpp>
#include <dhtkit/peer/sync_service.hpp>

#include <poll.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

using namespace dhtkit;
using namespace dhtkit::protocol;
using namespace std::chrono_literals;

namespace {

using table_t = locked_table<std::string, std::string>;

// A record of key k as a holder would send it.
std::string record_of(int i) {
    std::string r(1, static_cast<char>(table_id::keys));
    append_versioned(r, dhtkit::version{1000 + static_cast<std::uint64_t>(i), 2, 0}, false, fmt::format("v{}", i));
    return r;
}

// The next request after the greeting, which is answered as a peer of the same map would.
rpc_status next_after_hello(rpc_stream& rpc, frame_view& f) {
    auto r = rpc.receive(f, 5s);
    if (r != rpc_status::ok || f.h.op != opcode::hello) return r;
    if (rpc.send({opcode::hello, 0, status::ok, f.h.request_id, 0, 0}, {}, {}, 5s) != rpc_status::ok) return rpc_status::closed;
    return rpc.receive(f, 5s);
}

// Answers sync requests on `listener`: the first answer breaks off after 3 of 10 records, the
// second is whole and says it comes from a serving node.
void fake_holder(net::tcp_listener& listener, std::atomic<int>& asked) {
    for (int round = 0; round < 2; ++round) {
        pollfd ready{listener.fd(), POLLIN, 0};
        if (::poll(&ready, 1, 5000) != 1) return;
        auto s = listener.try_accept();
        if (!s) return;
        rpc_stream rpc(std::move(*s), frame_limits(1024, 1 << 20));
        frame_view f;
        if (next_after_hello(rpc, f) != rpc_status::ok || f.h.op != opcode::sync) return;
        asked.fetch_add(1);
        std::string out;
        const int n = round == 0 ? 3 : 10;
        for (int i = 0; i < n; ++i)
            append_frame(out, {opcode::sync, flag_more, status::ok, f.h.request_id, 0, 0}, fmt::format("k{}", i),
                         record_of(i));
        if (round == 1) append_frame(out, {opcode::sync, 0, status::ok, f.h.request_id, 0, 0}, {}, std::string(1, '\1'));
        (void)rpc.send_bytes(out, 5s);
    }
}

// A loopback port that was free a moment ago and that nobody listens on.
std::uint16_t nobody_listening() {
    auto probe = net::tcp_listener::bind(net::endpoint::parse("127.0.0.1:0"));
    return probe.local().port();  // closed again on return
}

// Node 1, catching up, in a two-node cluster whose node 2 listens (or not) on `port`.
struct catching_up {
    explicit catching_up(std::uint16_t port)
        : view(make_cluster_map(static_backup(1), 1,
                                {{1, "127.0.0.1", 1, node_state::member}, {2, "127.0.0.1", port, node_state::member}})) {}
    ~catching_up() { copies.stop(); }
    cluster_view view;
    table_t keys, files;
    index_service<table_t> index{keys, files, 1};
    replicator copies{frame_limits(1024, 1 << 20), [](table_id, std::string_view) { return std::optional<std::string>(); }};
    sync_service<table_t> sync{index, 1, view, copies, frame_limits(1024, 1 << 20)};
    std::vector<std::string> log;
    void run(std::chrono::milliseconds alone_after) {
        sync.catch_up_now([&](const std::string& line) { log.push_back(line); }, alone_after);
    }
};

}  // namespace

TEST_CASE("a catch-up stream cut short is asked for again, and only a whole one makes the slots ready") {
    auto holder = net::tcp_listener::bind(net::endpoint::parse("127.0.0.1:0"));
    catching_up node(holder.local().port());
    std::atomic<int> asked{0};
    std::thread fake([&] { fake_holder(holder, asked); });
    CHECK_FALSE(node.sync.serving());
    CHECK(node.sync.waiting() == "0-16383");
    node.run(30s);
    fake.join();

    CHECK(asked.load() == 2);
    CHECK(node.sync.serving());
    CHECK(node.sync.waiting().empty());
    CHECK(node.keys.size() == 10);
    CHECK(node.sync.caught_up_records() == 13);  // 3 from the stream cut short, then all 10
    CHECK(node.sync.unconfirmed() == 0);         // a whole stream from a serving holder
    REQUIRE_FALSE(node.log.empty());
    CHECK_THAT(node.log.front(), Catch::Contains("peer 2") && Catch::Contains("before the last"));
}

TEST_CASE("a holder that cannot be reached at all holds nothing up: a cluster starts one node at a time") {
    catching_up node(nobody_listening());
    node.run(60s);
    CHECK(node.sync.serving());
    CHECK(node.sync.caught_up_from() == 0);
    CHECK(node.log.size() == 3);  // asked once, then caught up: no waiting for a node that is not there
    // ... but it says that it serves slots no other holder confirmed, for anti-entropy to redo.
    CHECK(node.sync.unconfirmed() > 0);
    CHECK_THAT(node.log.back(), Catch::Contains("without a complete copy"));
}

TEST_CASE("a holder that broke off and then cannot be reached is waited for, up to the limit") {
    auto holder = net::tcp_listener::bind(net::endpoint::parse("127.0.0.1:0"));
    catching_up node(holder.local().port());
    std::thread fake([&] {
        // Three records, then the holder dies: the connection ends and nobody listens any more.
        pollfd ready{holder.fd(), POLLIN, 0};
        if (::poll(&ready, 1, 5000) != 1) return;
        auto s = holder.try_accept();
        if (!s) return;
        rpc_stream rpc(std::move(*s), frame_limits(1024, 1 << 20));
        frame_view f;
        if (next_after_hello(rpc, f) != rpc_status::ok) return;
        std::string out;
        for (int i = 0; i < 3; ++i)
            append_frame(out, {opcode::sync, flag_more, status::ok, f.h.request_id, 0, 0}, fmt::format("k{}", i),
                         record_of(i));
        (void)rpc.send_bytes(out, 5s);
        holder.close();
    });
    node.run(500ms);
    fake.join();
    CHECK(node.sync.serving());
    CHECK(node.keys.size() == 3);
    REQUIRE(node.log.size() >= 3);  // cut short, then asked again (unreachable) at least once, then caught up
    CHECK_THAT(node.log[0], Catch::Contains("before the last"));
    CHECK_THAT(node.log[1], !Catch::Contains("before the last"));
}

TEST_CASE("a lapsed lease from a slot's only other holder, not asked, leaves its slots serving") {
    // A dynamic map under faults can leave two holders of a slot; when the lease from the other
    // lapses and it cannot be asked, there is nobody to catch up from: the slots must not wait
    // for a catch-up that has no one to hear from (they did, for good).
    catching_up node(nobody_listening());
    node.run(500ms);
    REQUIRE(node.sync.waiting().empty());
    bool waited = false;
    node.sync.catch_up_again(2, false, [&] { waited = true; }, [&](const std::string& line) { node.log.push_back(line); });
    CHECK(waited);
    CHECK(node.sync.waiting().empty());
}
