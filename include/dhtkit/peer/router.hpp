#pragma once
// The router: what a worker does with a connection that is ready. It sends what waits to be sent,
// reads what has arrived, splits it into frames and hands each request to the service whose
// opcode it is (key, file, sync), then sends the replies as far as the socket takes them. The
// answer tells the dispatcher what to wait for next (dispatch.hpp).
//
// A request that starts a stream (fetch, sync) ends its batch: the requests after it are read
// once the stream has gone. A batch also ends after `max_in_flight` requests, so one pipelining
// client cannot keep a worker from the others, and when the output passes [limits]
// max_output_bytes, so a client that does not read stops being read (until it has taken it).

#include <array>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include <fmt/format.h>

#include "dhtkit/cluster/handshake.hpp"
#include "dhtkit/cluster/leases.hpp"
#include "dhtkit/peer/connection.hpp"
#include "dhtkit/peer/dispatch.hpp"
#include "dhtkit/peer/file_service.hpp"
#include "dhtkit/peer/key_service.hpp"
#include "dhtkit/peer/log_limiter.hpp"
#include "dhtkit/peer/settings.hpp"
#include "dhtkit/peer/stats.hpp"
#include "dhtkit/peer/sync_service.hpp"
#include "dhtkit/protocol/codec.hpp"

namespace dhtkit {

template <table Table, replication_policy Replication>
class router {
public:
    using log_fn = std::function<void(const std::string&)>;

    router(key_service<Table, Replication>& keys, file_service& files, sync_service<Table>& sync, node_id self,
           const cluster_view& view, std::string source, limits_settings lim, peer_stats& stats,
           std::function<std::string()> report, log_fn log, lease_grants* grants = nullptr,
           std::shared_ptr<const protocol::cluster_key> secret = nullptr, std::string password = {},
           std::function<dhtkit::reply()> leave = nullptr)
        : keys_(keys), files_(files), sync_(sync), self_(self), view_(view), source_(std::move(source)), limits_(lim),
          stats_(stats), report_(std::move(report)), log_(std::move(log)), grants_(grants), secret_(std::move(secret)),
          password_(std::move(password)), leave_(std::move(leave)) {}

    next_step serve(connection& c) {
        if (c.held()) return next_step::park;  // woken while parked
        c.settle();
        switch (c.flush()) {
            case connection::flush_result::failed: return next_step::close;
            case connection::flush_result::pending: return next_step::drain;
            case connection::flush_result::done: break;
        }
        if (c.broken) return next_step::close;  // its last reply has gone
        bool more = false;
        c.begin_batch();
        bool open = receive(c);
        if (open) open = handle_frames(c, more);
        c.broken = !open;  // before end_batch: once it returns, a release may serve c elsewhere
        if (c.end_batch()) return next_step::park;
        c.settle();
        auto sent = c.flush();
        if (sent == connection::flush_result::failed || !open) return next_step::close;
        if (sent == connection::flush_result::pending) return next_step::drain;
        c.trim();
        return more ? next_step::again : next_step::wait;
    }

    // Answers one request on `c` as if it had come in our frames (the RESP front's commands).
    void answer(const protocol::frame_view& f, connection& c) { (void)handle(f, c); }

private:
    static constexpr std::size_t read_chunk = 64 * 1024;

    // Reads what has arrived. False when the client has gone. Bytes land in a per-worker buffer
    // and only what they hold is copied into the connection's reader, which keeps an idle
    // connection's memory small.
    static bool receive(connection& c) {
        thread_local std::array<std::byte, read_chunk> scratch;
        for (;;) {
            auto in = c.stream.receive_some(scratch);
            if (!in) return false;
            c.count_received(in.bytes);
            c.reader.feed({reinterpret_cast<const char*>(scratch.data()), in.bytes});
            // A short read drained the socket; the level-triggered re-arm catches anything later.
            if (in.bytes < read_chunk) return true;
        }
    }

    bool handle_frames(connection& c, bool& more) {
        protocol::frame_view f;
        for (std::size_t n = 0; n < limits_.max_in_flight; ++n) {
            if (c.unsent() > limits_.max_output_bytes) break;
            auto r = c.reader.next(f);
            if (r == protocol::frame_reader::result::need_more) return true;
            if (r == protocol::frame_reader::result::error) {
                stats_.count_error();
                reject(c);
                return false;
            }
            if (handle(f, c)) break;  // a stream follows: the rest waits for it
        }
        more = true;
        return true;
    }

    // The stream is out of step: answer with the reason; the caller closes once it has gone.
    void reject(connection& c) {
        auto e = c.reader.last_error();
        bool size = e == protocol::header_error::key_too_large || e == protocol::header_error::value_too_large;
        protocol::header h{c.reader.error_header().op, 0, size ? protocol::status::too_large : protocol::status::bad_request,
                           c.reader.error_header().request_id, 0, 0};
        std::string why(to_string(e));
        if (size)
            why += fmt::format(" (limits: key {} bytes, value {} bytes)", limits_.max_key_bytes, limits_.max_value_bytes);
        protocol::append_frame(c.out, h, {}, why);
    }

    // With a cluster secret: checks a signed request (and takes its MAC off), and refuses a
    // request between nodes that is not signed. With a client password: refuses a client's
    // request, but ping, on a connection that has not sent it (a signed request needs none: the
    // secret says more). True when `f` may go on.
    bool admit(protocol::frame_view& f, connection& c) {
        using protocol::opcode;
        const bool is_signed = f.h.flags & protocol::flag_signed;
        std::string_view why;
        if (is_signed) {
            if (secret_ && c.verifier && c.verifier->verify(f)) return true;
            why = secret_ ? "bad signature: not signed with this cluster's secret for this connection, or replayed"
                          : "this peer has no cluster secret: it takes no signed requests";
        } else if (secret_ && protocol::needs_signature(f.h)) {
            why = "this cluster requires its secret: requests between nodes must be signed";
        } else if (!password_.empty() && !c.authenticated && !protocol::needs_signature(f.h) && f.h.op != opcode::ping &&
                   f.h.op != opcode::auth) {
            why = "authentication required: send the client password first (auth)";
        } else {
            return true;
        }
        refuse(f, c, why);
        return false;
    }

    void refuse(const protocol::frame_view& f, connection& c, std::string_view why) {
        stats_.count_error();
        protocol::header reply{f.h.op, 0, protocol::status::refused, f.h.request_id, 0, 0};
        protocol::append_frame(c.out, reply, {}, why);
        if (refusal_log_.allow())
            log_(fmt::format("refused {} from {}: {}", static_cast<unsigned>(f.h.op), c.stream.remote().to_string(), why));
    }

    // One request. True when a stream follows its reply.
    bool handle(protocol::frame_view f, connection& c) {
        using protocol::opcode;
        using protocol::status;
        stats_.count(f.h.op);
        protocol::header reply{f.h.op, 0, status::ok, f.h.request_id, 0, 0};
        if (f.h.op != opcode::hello && !admit(f, c)) return false;
        if (f.h.op == opcode::replicate) {
            keys_.handle(f, c);
            return false;
        }
        if (key_service<Table, Replication>::handles(f.h.op)) {
            // Another holder's majority read wants this node's record whatever its state; a put or
            // del carries its version and is right on any copy, where the registry's writes
            // merge into the entry here and need it caught up.
            // (A put with options — SET NX, XX, GET, KEEPTTL — depends on what is here: not that.)
            const bool any_copy = (f.h.flags & protocol::flag_own_copy) || f.h.op == opcode::del ||
                                  (f.h.op == opcode::put && !(f.h.flags & protocol::flag_options));
            if (!any_copy && !sync_.ready(key_slot(f.key))) {
                reply.code = status::unavailable;
                protocol::append_frame(c.out, reply, {},
                                       sync_.serving() ? "catching up after a lapsed read lease: ask the next holder"
                                                       : "catching up after a restart: ask the next holder");
                return false;
            }
            keys_.handle(f, c);
            return false;
        }
        if (file_service::handles(f.h.op)) {
            files_.handle(f, c);
            return f.h.op == opcode::fetch;
        }
        switch (f.h.op) {
            case opcode::ping:
                protocol::append_frame(c.out, reply, {}, fmt::format("peer {}", self_));
                return false;
            case opcode::stats:
                protocol::append_frame(c.out, reply, {}, report_());
                return false;
            case opcode::leave: {
                auto r = leave_ ? leave_()
                                : dhtkit::reply{status::unknown_opcode, {}, "this peer cannot leave: its membership is static", true};
                reply.code = r.code;
                protocol::append_frame(c.out, reply, {}, r.ok() ? r.value : r.error);
                return false;
            }
            case opcode::map: {
                const auto& m = view_.current();
                protocol::append_frame(c.out, reply, {}, protocol::encode_nodes(m.epoch(), m.nodes()));
                return false;
            }
            case opcode::sync:
                sync_.handle(f, c);
                return true;
            case opcode::lease: {
                auto asker = protocol::decode_u64(f.value);
                if (!asker || !grants_) {
                    stats_.count_error();
                    reply.code = asker ? status::unknown_opcode : status::bad_request;
                    protocol::append_frame(c.out, reply, {}, asker ? "this peer grants no read leases" : "a lease request is the asker's node id (u64)");
                    return false;
                }
                // A live map's grantor leases nothing to a node it takes for dead or departed (or
                // has not heard of): that node missed what the map moved without it, and must be
                // back in the view (it refutes) before it vouches for any copy.
                if (const auto& m = view_.current(); m.live() && *asker != self_) {
                    const node* n = m.find(*asker);
                    if (!n || n->state == node_state::failed || n->state == node_state::left) {
                        reply.code = status::unavailable;
                        protocol::append_frame(c.out, reply, {},
                                               fmt::format("peer {} takes node {} for {}: no lease until it is back", self_,
                                                           *asker, n ? to_string(n->state) : "unknown"));
                        return false;
                    }
                }
                if (auto term = grants_->grant(*asker)) {
                    protocol::append_frame(c.out, reply, {}, protocol::encode_u64(static_cast<std::uint64_t>(term->count())));
                } else {
                    reply.code = status::unavailable;
                    protocol::append_frame(c.out, reply, {},
                                           fmt::format("peer {} missed writes acknowledged by peer {}: catch up first", *asker, self_));
                }
                return false;
            }
            case opcode::auth: {
                if (password_.empty()) {
                    reply.code = status::bad_request;
                    protocol::append_frame(c.out, reply, {}, "this peer has no client password");
                    return false;
                }
                // Compared in constant time: how long a wrong guess takes says nothing.
                if (f.value.size() != password_.size() ||
                    sodium_memcmp(f.value.data(), password_.data(), password_.size()) != 0) {
                    refuse(f, c, "wrong password");
                    return false;
                }
                c.authenticated = true;
                protocol::append_frame(c.out, reply, {}, {});
                return false;
            }
            case opcode::hello: {
                auto them = protocol::decode_hello(f.value);
                std::string refusal = them ? hello_refusal(*them, view_.current().hello_digest(), source_, self_)
                                           : std::string("a hello is a map digest (u64), then its source");
                if (!refusal.empty()) {
                    stats_.count_error();
                    reply.code = them ? status::refused : status::bad_request;
                    log_(fmt::format("refused {}: {}", c.stream.remote().to_string(), refusal));
                    protocol::append_frame(c.out, reply, {}, refusal);
                    return false;
                }
                if (!secret_) {
                    protocol::append_frame(c.out, reply, {}, {});
                    return false;
                }
                // A fresh nonce: what the other side signs from now on is good on this connection only.
                const auto nonce = protocol::new_nonce();
                c.verifier.emplace(*secret_, nonce);
                protocol::append_frame(c.out, reply, {},
                                       std::string_view(reinterpret_cast<const char*>(nonce.data()), nonce.size()));
                return false;
            }
            default:
                stats_.count_error();
                reply.code = status::unknown_opcode;
                protocol::append_frame(c.out, reply, {},
                                       fmt::format("opcode {} is not an operation of this peer", static_cast<unsigned>(f.h.op)));
                return false;
        }
    }

    key_service<Table, Replication>& keys_;
    file_service& files_;
    sync_service<Table>& sync_;
    node_id self_;
    const cluster_view& view_;
    std::string source_;  // where this node's map came from, for a mismatch's words
    limits_settings limits_;
    peer_stats& stats_;
    std::function<std::string()> report_;
    log_fn log_;
    lease_grants* grants_;
    std::shared_ptr<const protocol::cluster_key> secret_;
    std::string password_;
    std::function<dhtkit::reply()> leave_;  // the `leave` request: begins leaving, answers at once (null: static membership)
    log_limiter refusal_log_;
};

}  // namespace dhtkit
