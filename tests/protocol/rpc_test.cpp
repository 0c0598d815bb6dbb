// The non-blocking sending half of rpc_stream, as the replica links use it: frames made by
// writers that do not know the connection's nonce are signed when queued on a signing
// connection, go out in order as the socket takes them, and are dropped with the connection.
#include <catch2/catch.hpp>

#include <dhtkit/protocol/rpc.hpp>

#include <poll.h>

#include <chrono>
#include <string>

using namespace dhtkit;
using namespace dhtkit::protocol;
using namespace std::chrono_literals;

namespace {

struct connected_pair {
    net::tcp_listener listener = net::tcp_listener::bind(net::endpoint::parse("127.0.0.1:0"));
    rpc_stream client = rpc_stream::connect("127.0.0.1", listener.local().port(), limits{}, 1s);
    rpc_stream server;
    connected_pair() {
        pollfd ready{listener.fd(), POLLIN, 0};
        REQUIRE(::poll(&ready, 1, 2000) == 1);  // the connection is made: its accept is waiting
        auto s = listener.try_accept();
        REQUIRE(s);
        server = rpc_stream(std::move(*s), limits{});
    }
    void send_all_queued() {
        for (int i = 0; i < 1000 && client.has_queued(); ++i) REQUIRE(client.send_queued());
        REQUIRE_FALSE(client.has_queued());
    }
};

std::string writers_frames() {
    std::string out;
    append_frame(out, {opcode::replicate, 0, status::ok, 7, 0, 0}, "k1", "v1");
    append_frame(out, {opcode::replicate, 0, status::ok, 8, 0, 0}, "k2", std::string(100'000, 'x'));
    return out;
}

}  // namespace

TEST_CASE("frames queued on a signing connection go out signed, in order, whatever the socket takes at once") {
    connected_pair p;
    const auto key = derive_key("a secret of at least sixteen bytes");
    const auto nonce = new_nonce();
    p.client.sign_with(frame_signer(key, nonce));
    frame_verifier verifier(key, nonce);

    p.client.queue_frames(writers_frames());
    p.client.queue_request({opcode::get, flag_own_copy, status::ok, 9, 0, 0}, "k3", {});
    REQUIRE(p.client.has_queued());
    p.send_all_queued();

    frame_view f;
    REQUIRE(p.server.receive(f, 2s) == rpc_status::ok);
    CHECK(f.h.request_id == 7);
    REQUIRE(verifier.verify(f));
    CHECK(f.key == "k1");
    CHECK(f.value == "v1");
    REQUIRE(p.server.receive(f, 2s) == rpc_status::ok);
    CHECK(f.h.request_id == 8);
    REQUIRE(verifier.verify(f));
    CHECK(f.value.size() == 100'000);
    REQUIRE(p.server.receive(f, 2s) == rpc_status::ok);
    CHECK(f.h.request_id == 9);
    CHECK(f.key == "k3");
}

TEST_CASE("frames queued on a connection that does not sign go out as they were made; closing drops the rest") {
    connected_pair p;
    p.client.queue_frames(writers_frames());
    p.send_all_queued();
    frame_view f;
    REQUIRE(p.server.receive(f, 2s) == rpc_status::ok);
    CHECK(f.h.request_id == 7);
    CHECK_FALSE(f.h.flags & flag_signed);
    CHECK(f.value == "v1");

    p.client.queue_frames(writers_frames());
    p.client.close();
    CHECK_FALSE(p.client.has_queued());
}
