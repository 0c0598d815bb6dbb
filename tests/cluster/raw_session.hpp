#pragma once
// Speaking frames (or garbage) to a peer directly, for the cluster tests: send bytes, read the
// frames that come back in order, and notice when the peer closes.

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <dhtkit/net/socket.hpp>
#include <dhtkit/protocol/codec.hpp>

namespace test {

using namespace dhtkit::protocol;
using namespace std::chrono_literals;

// Sends raw bytes, then reads frames until `count` arrived or the peer closed.
struct raw_session {
    dhtkit::net::tcp_stream s;
    frame_reader reader{{1024, 1 << 22}};
    bool closed = false;

    void send(std::string_view bytes) { REQUIRE(s.send_all(std::as_bytes(std::span(bytes)), 2s).ok()); }

    std::vector<std::pair<header, std::string>> read(std::size_t count) {
        std::vector<std::pair<header, std::string>> got;
        frame_view f;
        while (got.size() < count) {
            auto r = reader.next(f);
            if (r == frame_reader::result::frame) {
                got.emplace_back(f.h, std::string(f.value));
                continue;
            }
            REQUIRE(r == frame_reader::result::need_more);
            REQUIRE(s.wait_readable(5s));
            auto in = s.receive_some(reader.prepare(65536));
            if (!in.ok() || in.bytes == 0) {
                closed = true;
                break;
            }
            reader.commit(in.bytes);
        }
        return got;
    }

    // True once the peer has closed the connection (within 5 s).
    bool sees_close() {
        std::byte b;
        return s.receive_all({&b, 1}, 5s).status == dhtkit::net::io_status::closed;
    }
};

inline std::string frame(opcode op, std::uint64_t id, std::string_view key, std::string_view value = {}) {
    std::string out;
    append_frame(out, {op, 0, status::ok, id, 0, 0}, key, value);
    return out;
}

}  // namespace test
