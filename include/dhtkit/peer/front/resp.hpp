#pragma once
// The RESP front: connections that speak RESP2 (protocol/resp.hpp), in the same pump
// (peer/pump.hpp) and on the same workers as our frames. Each command becomes the requests a
// binary client would send (a SET is a put, an MGET one get per key) and goes to the same
// services, replication and log: a SET is acknowledged exactly when a put would be. Once no outcome
// is held, each command's plan turns its share of them into one RESP reply (resp_replies.hpp).
// Commands that ask no service: resp_admin.hpp (HELLO, AUTH, CLIENT, INFO, CONFIG) and
// resp_cluster.hpp (CLUSTER, DHT.WHERE).
//
// Cluster mode as Redis Cluster clients expect it: CLUSTER SLOTS / SHARDS / NODES / INFO / MYID /
// KEYSLOT describe the cluster map with each node's resp_port; a key that this node does not hold
// gets `-MOVED <slot> <host>:<resp_port>` of its home; the keys of one command must share a slot
// (-CROSSSLOT otherwise). A holder that is not the home serves the key too, as it does our frames.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <variant>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <sodium.h>

#include "dhtkit/cluster/cluster_map.hpp"
#include "dhtkit/peer/connection.hpp"
#include "dhtkit/peer/front/held_work.hpp"
#include "dhtkit/peer/front/resp_admin.hpp"
#include "dhtkit/peer/front/resp_cluster.hpp"
#include "dhtkit/peer/front/resp_commands.hpp"
#include "dhtkit/peer/front/resp_replies.hpp"
#include "dhtkit/peer/front/resp_session.hpp"
#include "dhtkit/peer/pump.hpp"
#include "dhtkit/peer/settings.hpp"
#include "dhtkit/protocol/frame.hpp"
#include "dhtkit/protocol/messages.hpp"
#include "dhtkit/protocol/resp.hpp"
#include "dhtkit/store/versioned.hpp"

namespace dhtkit {

class resp_front {
public:
    using session = resp_session;
    using request = std::vector<std::string_view>;
    static constexpr bool stamps_arrivals = true;

    resp_front(node_id self, const cluster_view& view, limits_settings lim, std::string password, resp_context ctx)
        : self_(self), view_(view), limits_(lim), password_(std::move(password)), ctx_(std::move(ctx)),
          off_loop_(ctx_.forward ? forwarding_threads : 1) {
        randombytes_buf(&writer_, sizeof writer_);
    }

    // A bulk string up to the larger of the key and value limits; the reader's other bounds as they are.
    [[nodiscard]] session open() const {
        protocol::resp_limits l;
        l.max_bulk_bytes = std::max(limits_.max_key_bytes, limits_.max_value_bytes);
        return session(l);
    }

    void malformed(session& s, connection& c) { error(c, "ERR " + s.reader.last_error()); }

    // Redis's order: an unknown command or a wrong count of arguments is said first (it reveals
    // nothing); AUTH, HELLO (which may carry AUTH) and QUIT need no password.
    [[nodiscard]] bool needs_password(const request& args) const {
        const auto* ci = resp_commands::find_command(args[0]);
        using enum resp_commands::command_id;
        return ci && resp_commands::arity_ok(*ci, args.size()) && ci->id != auth && ci->id != hello && ci->id != quit;
    }
    void unauthenticated(const request&, session&, connection& c) { error(c, "NOAUTH Authentication required."); }
    // Redis's words for the same bound (CVE-2021-32675), which names the multibulk or bulk length.
    void too_long_before_auth(session&, connection& c) {
        error(c, fmt::format("ERR Protocol error: unauthenticated request longer than {} bytes",
                             before_auth_bytes));
    }

    handled handle(const request& args, session&, connection& c) { return execute(args, c) ? handled::next : handled::close; }

    // Once nothing is held: each plan turns its share of the batch's outcomes into one RESP reply.
    void finish(session& s, connection& c) {
        if (s.plans.empty()) return;
        resp_replies::render(s.plans, c.answers(), c.out, unix_ms_now());
        s.plans.clear();
        c.clear_answers();
    }

private:
    using kind = resp_replies::plan::kind;
    using args_t = std::vector<std::string_view>;

    static resp_session& session_of(connection& c) noexcept { return pump<resp_front>::of(c); }

    // --- replies --------------------------------------------------------------------------------

    template <class F>
    static void text(connection& c, F&& write) {
        resp_replies::plan p;
        write(p.text);
        session_of(c).plans.push_back(std::move(p));
    }
    static void error(connection& c, std::string_view message) {
        text(c, [&](std::string& o) { protocol::resp::error(o, message); });
    }
    static void ok(connection& c) {
        text(c, [](std::string& o) { protocol::resp::simple(o, "OK"); });
    }

    // Sends one of our requests for the command being planned.
    void issue(connection& c, protocol::opcode op, std::string_view key, std::string_view value = {},
                 std::uint8_t flags = 0) {
        if (op == protocol::opcode::put || op == protocol::opcode::del || op == protocol::opcode::expire) {
            // Stamped with the moment its command reached this host, as our client stamps its
            // writes when it issues them: a command that waited (behind a held reply, or in the
            // socket of a stopped process) while its client gave up and wrote again elsewhere
            // loses to that later write instead of undoing it. Unique per write: the writer is this
            // front's own id, the sequence its own count.
            thread_local std::string stamped;
            stamped.clear();
            const auto at = session_of(c).command_arrived_us ? session_of(c).command_arrived_us : stamp_now();
            append_version(stamped, {at, writer_, sequence_.fetch_add(1, std::memory_order_relaxed)});
            stamped += value;
            value = stamped;
            flags |= protocol::flag_stamped;
        }
        if (forwarding_) return forward(c, op, key, value, flags);
        protocol::frame_view f{{op, flags, protocol::status::ok, 0, static_cast<std::uint32_t>(key.size()),
                                static_cast<std::uint32_t>(value.size())},
                               key, value};
        ctx_.answer(f, c);
    }

    // The same request, to the key's holders.
    void forward(connection& c, protocol::opcode op, std::string_view key, std::string_view value, std::uint8_t flags) {
        off_loop_.run(c, op, [this, op, flags, key = std::string(key), value = std::string(value)] {
            return ctx_.forward(op, key, value, flags);
        });
    }

    void plan(connection& c, kind how, std::size_t answers) {
        session_of(c).plans.push_back({how, static_cast<std::uint32_t>(answers), {}});
    }

    // --- commands -------------------------------------------------------------------------------

    // False when the connection closes once its replies have gone.
    bool execute(const args_t& args, connection& c) {
        forwarding_ = false;
        const auto* ci = resp_commands::find_command(args[0]);
        if (!ci) {
            std::string shown;
            for (std::size_t i = 1; i < args.size() && i < 4; ++i) shown += fmt::format("'{}' ", args[i]);
            error(c, fmt::format("ERR unknown command '{}', with args beginning with: {}", args[0], shown));
            return true;
        }
        const std::string_view name = ci->name;  // lower case
        const auto n = static_cast<int>(args.size());
        if (!resp_commands::arity_ok(*ci, args.size())) {
            error(c, fmt::format("ERR wrong number of arguments for '{}' command", name));
            return true;
        }
        // Cluster routing: the keys must share a slot this node holds.
        const auto& keys = resp_commands::keys_of(*ci, args);
        using enum resp_commands::command_id;
        if (!keys.empty() && ci->id != dht_where) {
            const auto slot = resp_commands::slot_of_keys(keys, limits_.max_key_bytes);
            if (const auto* why = std::get_if<std::string>(&slot)) {
                error(c, *why);
                return true;
            }
            if (auto moved = resp_cluster::moved_to(view_.current(), self_, std::get<slot_t>(slot))) {
                if (!ctx_.forward) {
                    error(c, *moved);
                    return true;
                }
                forwarding_ = true;  // this command's requests go to the key's holders
            }
        }
        switch (ci->id) {
            case ping:
                if (n > 2) error(c, "ERR wrong number of arguments for 'ping' command");
                else if (n == 2) text(c, [&](std::string& o) { protocol::resp::bulk(o, args[1]); });
                else text(c, [](std::string& o) { protocol::resp::simple(o, "PONG"); });
                break;
            case echo: text(c, [&](std::string& o) { protocol::resp::bulk(o, args[1]); }); break;
            case quit: ok(c); return false;
            case hello:
            case auth: {
                bool right = true;
                text(c, [&](std::string& o) {
                    right = ci->id == hello ? resp_admin::hello(o, args, password_, client_state(c))
                                            : resp_admin::auth(o, args.back(), password_, client_state(c));
                });
                if (right) break;
                if (ctx_.wrong_password) ctx_.wrong_password();  // counted; closed once answered (resp_admin.hpp)
                return false;
            }
            case client: text(c, [&](std::string& o) { resp_admin::client(o, args, client_state(c)); }); break;
            case select:
                if (args[1] == "0") ok(c);
                else error(c, "ERR SELECT is not allowed in cluster mode");
                break;
            case readonly:
            case readwrite: ok(c); break;
            case get:
                plan(c, kind::bulk, 1);
                issue(c, protocol::opcode::get, args[1]);
                break;
            case set:
            case setex:
            case psetex: this->set(name, args, c); break;
            case getdel:
                // A get, then a del, answered on this thread one after the other: not one step, so
                // a write from another client may fall between them.
                plan(c, kind::first_bulk, 2);
                issue(c, protocol::opcode::get, args[1]);
                issue(c, protocol::opcode::del, args[1]);
                break;
            case expire:
            case pexpire:
            case expireat:
            case pexpireat: {
                auto at = resp_commands::parse_expire(name, args, static_cast<std::int64_t>(unix_ms_now()));
                if (const auto* why = std::get_if<std::string>(&at)) {
                    error(c, *why);
                    break;
                }
                plan(c, kind::expire, 1);
                issue(c, protocol::opcode::expire, args[1], protocol::encode_u64(std::get<std::uint64_t>(at)));
                break;
            }
            case persist:
                plan(c, kind::persist, 1);
                issue(c, protocol::opcode::expire, args[1], protocol::encode_u64(0));
                break;
            case ttl:
            case pttl:
                plan(c, ci->id == ttl ? kind::ttl : kind::pttl, 1);
                issue(c, protocol::opcode::get, args[1], {}, protocol::flag_options);
                break;
            case del:
            case unlink:
                plan(c, kind::count_ok, keys.size());
                for (auto k : keys) issue(c, protocol::opcode::del, k);
                break;
            case exists:
                plan(c, kind::count_ok, keys.size());
                for (auto k : keys) issue(c, protocol::opcode::get, k);
                break;
            case mget:
                plan(c, kind::values, keys.size());
                for (auto k : keys) issue(c, protocol::opcode::get, k);
                break;
            case mset:
                for (std::size_t i = 2; i < args.size(); i += 2)
                    if (auto why = resp_commands::value_over(args[i], limits_.max_value_bytes)) {
                        error(c, *why);
                        return true;
                    }
                plan(c, kind::ok, keys.size());
                for (std::size_t i = 1; i < args.size(); i += 2) issue(c, protocol::opcode::put, args[i], args[i + 1]);
                break;
            case type:
                plan(c, kind::type, 1);
                issue(c, protocol::opcode::get, args[1]);
                break;
            case dbsize:
                text(c, [&](std::string& o) { protocol::resp::integer(o, static_cast<std::int64_t>(ctx_.key_count())); });
                break;
            case info: {
                const auto* me = view_.current().find(self_);
                const auto stats = ctx_.stats();
                text(c, [&](std::string& o) {
                    resp_admin::info(o, args, {self_, me ? me->resp_port : std::uint16_t{0}, stats, ctx_.key_count});
                });
                break;
            }
            case config: text(c, [&](std::string& o) { resp_admin::config(o, args, ctx_.appendonly); }); break;
            case command: text(c, [&](std::string& o) { resp_admin::command(o, args); }); break;
            case cluster: {
                const auto sub = resp_commands::upper(args[1]);
                text(c, [&](std::string& o) {
                    if (!resp_cluster::answer(o, sub, args, view_.current(), self_, slots_))
                        resp_admin::subcommand_error(o, "cluster", args[1], resp_cluster::knows(sub));
                });
                break;
            }
            case dht_search:
                plan(c, kind::holders, 1);
                issue(c, protocol::opcode::search, args[1]);
                break;
            case dht_where: text(c, [&](std::string& o) { resp_cluster::where(o, args[1], view_.current()); }); break;
            case dht_register:
            case dht_unregister: {
                const bool registering = ci->id == dht_register;
                const auto& act = registering ? ctx_.announce : ctx_.withdraw;
                if (!act) {
                    error(c, "ERR this peer has no shared folder to register from");
                    break;
                }
                plan(c, kind::ok, 1);
                off_loop_.run(c, registering ? protocol::opcode::register_file : protocol::opcode::unregister_file,
                              [&act, file = std::string(args[1])] { return act(file); });
                break;
            }
        }
        return true;
    }

    // SET, SETEX, PSETEX.
    void set(std::string_view name, const args_t& args, connection& c) {
        using protocol::put_options;
        auto parsed = resp_commands::parse_set(name, args, static_cast<std::int64_t>(unix_ms_now()));
        if (const auto* why = std::get_if<std::string>(&parsed)) return error(c, *why);
        const auto& [o, value] = std::get<resp_commands::set_request>(parsed);
        if (auto why = resp_commands::value_over(value, limits_.max_value_bytes)) return error(c, *why);
        if (o.mask == 0) {  // a plain put, as a binary client's
            plan(c, kind::ok, 1);
            issue(c, protocol::opcode::put, args[1], value);
            return;
        }
        thread_local std::string with;
        protocol::append(with = {}, o);
        with += value;
        plan(c, (o.mask & put_options::return_old) ? kind::set_get : kind::set, 1);
        issue(c, protocol::opcode::put, args[1], with, protocol::flag_options);
    }

    [[nodiscard]] resp_admin::client_state client_state(connection& c) const {
        return {c.authenticated, session_of(c).name, c.stream.fd()};
    }

    // Forwarded requests wait on these (one request at a time per holder, as the peer's client
    // keeps one connection to each): enough to overlap the holders, not to outrun them. Without
    // forwarding, one thread for DHT.REGISTER.
    static constexpr std::size_t forwarding_threads = 4;

    node_id self_;
    const cluster_view& view_;
    limits_settings limits_;
    std::string password_;
    resp_context ctx_;
    held_work off_loop_;        // forwarded requests and DHT.REGISTER
    std::uint64_t writer_ = 0;  // the writer of the versions this front stamps (random)
    std::atomic<std::uint64_t> sequence_{0};
    resp_cluster::slots_cache slots_;
    inline static thread_local bool forwarding_ = false;  // the command being planned goes to the holders
};

}  // namespace dhtkit
