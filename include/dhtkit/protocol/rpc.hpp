#pragma once
// The one request/response helper: a connection that sends whole frames and reads frames back,
// with timeouts, under the one frame-limit rule (frame.hpp). The client's calls, catch-up, file
// downloads and the replica links all speak through it, so how a frame is written, read, limited
// and timed out is decided here once.
//
// Blocking calls take a timeout that bounds a stall (no progress), not the whole exchange. The
// replica links, which poll many things at once and pipeline their requests, use the non-blocking
// calls: queue_request()/queue_frames() and send_queued() to send, receive_some()/next() to read.

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "dhtkit/net/address.hpp"
#include "dhtkit/net/socket.hpp"
#include "dhtkit/protocol/auth.hpp"
#include "dhtkit/protocol/codec.hpp"

namespace dhtkit::protocol {

enum class rpc_status { ok, closed, timed_out, bad_frame };

[[nodiscard]] constexpr std::string_view to_string(rpc_status s) noexcept {
    switch (s) {
        case rpc_status::ok: return "ok";
        case rpc_status::closed: return "the connection ended";
        case rpc_status::timed_out: return "timed out";
        case rpc_status::bad_frame: return "a malformed frame";
    }
    return "unknown";
}

class rpc_stream {
public:
    rpc_stream() = default;
    rpc_stream(net::tcp_stream s, limits lim) : stream_(std::move(s)), reader_(lim) {}

    // Throws std::system_error naming the address when the connection cannot be made in time.
    static rpc_stream connect(const std::string& host, std::uint16_t port, limits lim, std::chrono::milliseconds timeout) {
        return {net::tcp_stream::connect(net::endpoint::resolve(host, port), timeout), lim};
    }

    [[nodiscard]] bool valid() const noexcept { return stream_.valid(); }
    [[nodiscard]] net::tcp_stream& stream() noexcept { return stream_; }
    void close() noexcept {
        stream_.close();
        reader_ = frame_reader(reader_.frame_limits());
        signer_.reset();  // a new connection gets a new nonce
        queued_.clear();  // what was not sent went with the connection
        queued_sent_ = 0;
    }

    // Signs the requests sent from now on that need it, for this connection (protocol/auth.hpp).
    void sign_with(const frame_signer& s) { signer_.emplace(s); }
    [[nodiscard]] bool signing() const noexcept { return signer_.has_value(); }
    // Appends a request frame for this connection: signed when it signs and the request needs it.
    void append_request(std::string& out, const header& h, std::string_view key, std::string_view value) const {
        if (signer_ && needs_signature(h)) signer_->append(out, h, key, value);
        else append_frame(out, h, key, value);
    }

    // Queues a request frame, sent by send_queued() in order.
    void queue_request(const header& h, std::string_view key, std::string_view value) {
        append_request(queued_, h, key, value);
    }
    // Queues whole request frames made without this connection (by threads that do not know its
    // nonce): signed here when it signs.
    void queue_frames(std::string_view frames) {
        if (!signer_) {
            queued_.append(frames);
            return;
        }
        for (std::size_t at = 0; at + header_size <= frames.size();) {
            auto d = decode(std::span<const std::byte, header_size>(reinterpret_cast<const std::byte*>(frames.data() + at),
                                                                    header_size),
                            reader_.frame_limits());
            const auto body = frames.substr(at + header_size, d.h.key_length + d.h.value_length);
            append_request(queued_, d.h, body.substr(0, d.h.key_length), body.substr(d.h.key_length));
            at += header_size + body.size();
        }
    }
    [[nodiscard]] bool has_queued() const noexcept { return queued_sent_ < queued_.size(); }
    // Sends what the socket takes now, without waiting. False when the connection failed.
    bool send_queued() {
        auto r = stream_.send_some(std::as_bytes(std::span(queued_)).subspan(queued_sent_));
        if (!r) return false;
        queued_sent_ += r.bytes;
        if (queued_sent_ == queued_.size()) {
            queued_.clear();
            queued_sent_ = 0;
        }
        return true;
    }

    rpc_status send(const header& h, std::string_view key, std::string_view value, std::chrono::milliseconds timeout) {
        out_.clear();
        append_request(out_, h, key, value);
        return send_bytes(out_, timeout);
    }
    rpc_status send_bytes(std::string_view bytes, std::chrono::milliseconds timeout) {
        auto r = stream_.send_all(std::as_bytes(std::span(bytes)), timeout);
        return r.ok() ? rpc_status::ok : r.status == net::io_status::timed_out ? rpc_status::timed_out : rpc_status::closed;
    }

    // The next frame, waiting up to `timeout` for each piece of it.
    rpc_status receive(frame_view& f, std::chrono::milliseconds timeout) {
        for (;;) {
            auto r = next(f);
            if (r == frame_reader::result::frame) return rpc_status::ok;
            if (r == frame_reader::result::error) return rpc_status::bad_frame;
            auto in = receive_some();
            if (!in) return rpc_status::closed;
            if (in.bytes == 0 && !stream_.wait_readable(timeout)) return rpc_status::timed_out;
        }
    }

    // Reads what has arrived, without waiting. Not ok when the peer closed or reset.
    net::io_result receive_some(std::size_t at_most = 64 * 1024) {
        auto in = stream_.receive_some(reader_.prepare(at_most));
        reader_.commit(in.bytes);
        return in;
    }
    // A frame already read, if there is one.
    frame_reader::result next(frame_view& f) { return reader_.next(f); }

    // Raw bytes that follow a frame (a file's content): first what was read along with the frame,
    // then from the connection, waiting up to `timeout`. 0 bytes with ok means timed out.
    net::io_result receive_raw(std::span<std::byte> into, std::chrono::milliseconds timeout) {
        if (auto n = reader_.take_raw(into); n > 0) return {net::io_status::ok, n, 0};
        auto in = stream_.receive_some(into);
        if (in && in.bytes == 0 && !stream_.wait_readable(timeout)) return {net::io_status::timed_out, 0, 0};
        return in;
    }

    [[nodiscard]] const frame_reader& reader() const noexcept { return reader_; }

private:
    net::tcp_stream stream_;
    frame_reader reader_;
    std::string out_;
    std::optional<frame_signer> signer_;
    std::string queued_;           // the non-blocking half's
    std::size_t queued_sent_ = 0;  // of queued_
};

}  // namespace dhtkit::protocol
