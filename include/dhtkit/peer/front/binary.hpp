#pragma once
// The binary front: our frames (protocol/frame.hpp) on the peer's port. It parses frames and hands
// each request to the service whose opcode it is (key, file, sync), or answers it here (ping,
// stats, map, lease, auth, hello, leave). The pump (peer/pump.hpp) reads, bounds the batch, gates
// on the client password and sends.
//
// With a cluster secret, requests between nodes must be signed: hello answers with a nonce, and
// the connection's verifier (its session's) checks every signed request after it.
// A request that starts a stream (fetch, sync) ends its batch: the requests after it are read
// once the stream has gone.

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "dhtkit/cluster/handshake.hpp"
#include "dhtkit/cluster/leases.hpp"
#include "dhtkit/cluster/map_codec.hpp"
#include "dhtkit/log/logger.hpp"
#include "dhtkit/peer/connection.hpp"
#include "dhtkit/peer/file_service.hpp"
#include "dhtkit/peer/key_service.hpp"
#include "dhtkit/peer/log_limiter.hpp"
#include "dhtkit/peer/pump.hpp"
#include "dhtkit/peer/settings.hpp"
#include "dhtkit/peer/stats.hpp"
#include "dhtkit/peer/sync_service.hpp"
#include "dhtkit/protocol/auth.hpp"
#include "dhtkit/protocol/codec.hpp"
#include "dhtkit/store/storage.hpp"

namespace dhtkit {

// A binary connection's state: its reader, and (once it said hello to a node with the cluster's
// secret) the verifier of its signed requests.
struct binary_session {
    explicit binary_session(protocol::limits lim) : reader(lim) {}
    protocol::frame_reader reader;
    std::optional<protocol::frame_verifier> verifier;

    void feed(std::string_view bytes, std::uint64_t /*arrived_us*/) { reader.feed(bytes); }
    parsed next(protocol::frame_view& f) {
        switch (reader.next(f)) {
            case protocol::frame_reader::result::frame: return parsed::request;
            case protocol::frame_reader::result::need_more: return parsed::need_more;
            case protocol::frame_reader::result::error: break;
        }
        return parsed::error;
    }
    [[nodiscard]] std::size_t buffered() const noexcept { return reader.buffered(); }
    void release_if_empty() { reader.release_if_empty(); }
};

template <string_table Table, replication_policy Replication, storage_policy Storage = any_storage>
class binary_front {
public:
    using session = binary_session;
    using request = protocol::frame_view;
    static constexpr bool stamps_arrivals = false;

    using log_fn = logger;

    binary_front(key_service<Table, Replication, Storage>& keys, file_service& files, sync_service<Table, Storage>& sync, node_id self,
           const cluster_view& view, std::string source, limits_settings lim, peer_stats& stats,
           std::function<std::string()> report, log_fn log, lease_grants* grants = nullptr,
           std::shared_ptr<const protocol::cluster_key> secret = nullptr, std::string password = {},
           std::function<dhtkit::reply()> leave = nullptr)
        : keys_(keys), files_(files), sync_(sync), self_(self), view_(view), source_(std::move(source)), limits_(lim),
          stats_(stats), report_(std::move(report)), log_(std::move(log)), grants_(grants), secret_(std::move(secret)),
          password_(std::move(password)), leave_(std::move(leave)) {}

    [[nodiscard]] session open() const { return session(protocol::frame_limits(limits_.max_key_bytes, limits_.max_value_bytes)); }

    // The stream is out of step: answer with the reason; the pump closes once it has gone.
    void malformed(session& s, connection& c) {
        stats_.count_error();
        const auto e = s.reader.last_error();
        const bool size = e == protocol::header_error::key_too_large || e == protocol::header_error::value_too_large;
        protocol::header h{s.reader.error_header().op, 0, size ? protocol::status::too_large : protocol::status::bad_request,
                           s.reader.error_header().request_id, 0, 0};
        std::string why(to_string(e));
        if (size)
            why += fmt::format(" (limits: key {} bytes, value {} bytes)", limits_.max_key_bytes, limits_.max_value_bytes);
        c.answer(h, why);
    }

    // A client's request needs the password, but ping, auth and hello (and a signed request
    // between nodes: the secret says more).
    [[nodiscard]] bool needs_password(const request& f) const noexcept {
        using protocol::opcode;
        return !(f.h.flags & protocol::flag_signed) && !protocol::needs_signature(f.h) && f.h.op != opcode::ping &&
               f.h.op != opcode::auth && f.h.op != opcode::hello;
    }
    void unauthenticated(const request& f, session&, connection& c) {
        refuse(f, c, "authentication required: send the client password first (auth)");
    }
    void too_long_before_auth(session&, connection& c) {
        stats_.count_error();
        c.answer(protocol::header{protocol::opcode::auth, 0, protocol::status::too_large, 0, 0, 0},
                 fmt::format("authentication required: before the client password a request may be at most {} bytes",
                             before_auth_bytes));
    }

    handled handle(request& f, session& s, connection& c) {
        if (f.h.op != protocol::opcode::hello && !admit(f, s, c)) return handled::next;
        if (run(f, &s, c, false)) return handled::stream_follows;
        return c.closing ? handled::close : handled::next;  // a wrong password: no second guess here
    }
    // Renders the batch's outcomes as our frames.
    void finish(session&, connection& c) {
        for (const auto& o : c.answers()) append_frame(c.out, o);
        c.clear_answers();
    }

    // Answers one request on `c` as if it had come in our frames: the RESP front's commands, which
    // that front has admitted. `unversioned`: a write versioned by its arrival here.
    void answer(const protocol::frame_view& f, connection& c) { (void)run(f, nullptr, c, true); }

private:
    // With a cluster secret: checks a signed request (and takes its MAC off), and refuses a
    // request between nodes that is not signed. True when `f` may go on.
    bool admit(protocol::frame_view& f, session& s, connection& c) {
        using protocol::opcode;
        const bool is_signed = f.h.flags & protocol::flag_signed;
        std::string_view why;
        if (is_signed) {
            if (secret_ && s.verifier && s.verifier->verify(f)) return true;
            why = secret_ ? "bad signature: not signed with this cluster's secret for this connection, or replayed"
                          : "this peer has no cluster secret: it takes no signed requests";
        } else if (secret_ && protocol::needs_signature(f.h)) {
            why = "this cluster requires its secret: requests between nodes must be signed";
        } else {
            return true;
        }
        refuse(f, c, why);
        return false;
    }

    void refuse(const protocol::frame_view& f, connection& c, std::string_view why) {
        stats_.count_error();
        protocol::header reply{f.h.op, 0, protocol::status::refused, f.h.request_id, 0, 0};
        c.answer(reply, why);
        if (refusal_log_.allow())
            log_.warning(fmt::format("refused {} from {}: {}", static_cast<unsigned>(f.h.op), c.stream.remote().to_string(), why));
    }

    // One admitted request; `s`: its connection's session, null for the RESP front's. True when a
    // stream follows its reply.
    bool run(const protocol::frame_view& f, session* s, connection& c, bool unversioned) {
        using protocol::opcode;
        using protocol::status;
        stats_.count(f.h.op);
        protocol::header reply{f.h.op, 0, status::ok, f.h.request_id, 0, 0};
        if (f.h.op == opcode::replicate) {
            keys_.handle(f, c);
            return false;
        }
        if (key_service<Table, Replication, Storage>::handles(f.h.op)) {
            // Another holder's majority read wants this node's record whatever its state; a put or
            // del carries its version and is right on any copy, where the registry's writes
            // merge into the entry here and need it caught up.
            // (A put with options — SET NX, XX, GET, KEEPTTL — depends on what is here: not that.)
            const bool any_copy = (f.h.flags & protocol::flag_own_copy) || f.h.op == opcode::del ||
                                  (f.h.op == opcode::put && !(f.h.flags & protocol::flag_options));
            if (!any_copy && !sync_.ready(key_slot(f.key))) {
                reply.code = status::unavailable;
                c.answer(reply, sync_.serving() ? "catching up after a lapsed read lease: ask the next holder"
                                                       : "catching up after a restart: ask the next holder");
                return false;
            }
            keys_.handle(f, c, unversioned);
            return false;
        }
        if (file_service::handles(f.h.op)) {
            files_.handle(f, c);
            return f.h.op == opcode::fetch;
        }
        switch (f.h.op) {
            case opcode::ping:
                c.answer(reply, fmt::format("peer {}", self_));
                return false;
            case opcode::stats:
                c.answer(reply, report_());
                return false;
            case opcode::leave: {
                auto r = leave_ ? leave_()
                                : dhtkit::reply{status::unknown_opcode, {}, "this peer cannot leave: its membership is static", true};
                reply.code = r.code;
                c.answer(reply, r.ok() ? r.value : r.error);
                return false;
            }
            case opcode::map: {
                const auto& m = view_.current();
                c.answer(reply, protocol::encode_map(m));
                return false;
            }
            case opcode::sync:
                sync_.handle(f, c);
                return true;
            case opcode::lease: {
                auto ask = protocol::decode_lease_request(f.value);
                if (!ask || !grants_) {
                    stats_.count_error();
                    reply.code = ask ? status::unknown_opcode : status::bad_request;
                    c.answer(reply, ask ? "this peer grants no read leases"
                                               : "a lease request is the asker's node id and its map's placement digest (u64 each)");
                    return false;
                }
                // A live map's grantor leases nothing to a node it takes for dead or departed (or
                // has not heard of): that node missed what the map moved without it, and must be
                // back in the view (it refutes) before it vouches for any copy.
                const auto& m = view_.current();
                if (m.live() && ask->asker != self_) {
                    const node* n = m.find(ask->asker);
                    if (!n || n->state == node_state::failed || n->state == node_state::left) {
                        reply.code = status::unavailable;
                        c.answer(reply, fmt::format("peer {} takes node {} for {}: no lease until it is back", self_,
                                                           ask->asker, n ? to_string(n->state) : "unknown"));
                        return false;
                    }
                }
                const auto got = grants_->grant(ask->asker, ask->map);
                switch (got.why) {
                    case lease_grants::refusal::none:
                        c.answer(reply, protocol::encode_u64(static_cast<std::uint64_t>(got.term.count())));
                        break;
                    case lease_grants::refusal::behind:
                        reply.code = status::unavailable;
                        c.answer(reply, fmt::format("peer {} missed writes acknowledged by peer {}: catch up first",
                                                           ask->asker, self_));
                        break;
                    case lease_grants::refusal::other_map:
                    case lease_grants::refusal::settling:
                        // Not "behind": nothing to catch up from here; the maps must agree first.
                        reply.code = status::moved;
                        c.answer(reply, got.why == lease_grants::refusal::other_map
                                ? fmt::format("peer {} follows map {} (placement {:016x}), peer {} another: no lease "
                                              "until their maps agree",
                                              self_, m.epoch(), grants_->following(), ask->asker)
                                : fmt::format("peer {} took map {} a moment ago: no lease until the ones it granted "
                                              "under its last map have run out",
                                              self_, m.epoch()));
                        break;
                }
                return false;
            }
            case opcode::auth: {
                if (password_.empty()) {
                    reply.code = status::bad_request;
                    c.answer(reply, "this peer has no client password");
                    return false;
                }
                // Compared in constant time: how long a wrong guess takes says nothing.
                if (f.value.size() != password_.size() ||
                    sodium_memcmp(f.value.data(), password_.data(), password_.size()) != 0) {
                    // Closed once it is answered: each guess costs a connection, and is counted.
                    stats_.wrong_password();
                    refuse(f, c, "wrong password");
                    c.closing = true;
                    return false;
                }
                c.authenticated = true;
                c.answer(reply, {});
                return false;
            }
            case opcode::hello: {
                if (!s) break;
                auto them = protocol::decode_hello(f.value);
                const auto digest = view_.current().hello_digest();
                std::string refusal = them ? hello_refusal(*them, digest, source_, self_)
                                           : std::string("a hello is a map digest (u64), then its source");
                if (!refusal.empty()) {
                    stats_.count_error();
                    reply.code = them ? status::refused : status::bad_request;
                    log_.warning(fmt::format("refused {}: {}", c.stream.remote().to_string(), refusal));
                    // A protected peer tells a stranger neither its map nor where its file is.
                    const bool open_cluster = !secret_ && password_.empty();
                    c.answer(reply, them && !open_cluster ? hello_refusal(*them, digest, source_, self_, false) : refusal);
                    return false;
                }
                if (!secret_) {
                    c.answer(reply, {});
                    return false;
                }
                // A fresh nonce: what the other side signs from now on is good on this connection only.
                const auto nonce = protocol::new_nonce();
                s->verifier.emplace(*secret_, nonce);
                c.answer(reply, std::string_view(reinterpret_cast<const char*>(nonce.data()), nonce.size()));
                return false;
            }
            default: break;
        }
        stats_.count_error();
        reply.code = status::unknown_opcode;
        c.answer(reply, fmt::format("opcode {} is not an operation of this peer", static_cast<unsigned>(f.h.op)));
        return false;
    }

    key_service<Table, Replication, Storage>& keys_;
    file_service& files_;
    sync_service<Table, Storage>& sync_;
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
