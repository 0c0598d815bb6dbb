#pragma once
// The RESP front: connections that speak RESP2 (protocol/resp.hpp), in the same pump
// (peer/pump.hpp) and on the same workers as our frames. Each command becomes the requests a
// binary client would send (a SET is a put, an MGET one get per key) and goes to the same
// services, replication and log: a SET is acknowledged exactly when a put would be. The replies of a batch are our frames, in order; once
// none is held, each command's plan turns its share of them into one RESP reply.
//
// Cluster mode as Redis Cluster clients expect it: CLUSTER SLOTS / SHARDS / NODES / INFO / MYID /
// KEYSLOT describe the cluster map with each node's resp_port; a key that this node does not hold
// gets `-MOVED <slot> <host>:<resp_port>` of its home; the keys of one command must share a slot
// (-CROSSSLOT otherwise). A holder that is not the home serves the key too, as it does our frames.

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <sodium.h>

#include "dhtkit/cluster/cluster_map.hpp"
#include "dhtkit/concurrency/thread_pool.hpp"
#include "dhtkit/peer/connection.hpp"
#include "dhtkit/peer/front/resp_cluster.hpp"
#include "dhtkit/peer/front/resp_commands.hpp"
#include "dhtkit/peer/pump.hpp"
#include "dhtkit/peer/reply.hpp"
#include "dhtkit/peer/settings.hpp"
#include "dhtkit/protocol/frame.hpp"
#include "dhtkit/protocol/messages.hpp"
#include "dhtkit/protocol/resp.hpp"
#include "dhtkit/store/versioned.hpp"

namespace dhtkit {

// What the RESP front asks of the peer that composes it.
struct resp_context {
    // Answers one of our requests on the connection, as the binary front does for its clients.
    std::function<void(const protocol::frame_view&, connection&)> answer;
    std::function<std::string()> stats;      // `stats` lines (name=value), for INFO
    std::function<std::size_t()> key_count;  // DBSIZE: live keys held here (a walk over the table)
    std::string appendonly;                  // CONFIG GET appendonly: "yes" with a log
    // With [resp] route = "forward": asks the key's holders (home first) one of our requests and
    // waits for the reply. Run on the front's own threads, never on a worker. Empty: -MOVED.
    std::function<reply(protocol::opcode, std::string_view key, std::string_view value, std::uint8_t flags)> forward;
    // DHT.REGISTER / DHT.UNREGISTER: this peer registers a file of its shared folder (or withdraws
    // it), as the prompt's register does. They wait on the network: run on the front's threads.
    std::function<reply(std::string_view name)> announce, withdraw;
};

// A RESP connection's state: its reader, when its bytes arrived, and the batch being answered.
struct resp_session {
    explicit resp_session(protocol::resp_limits lim) : reader(lim) {}
    protocol::resp_reader reader;
    protocol::arrival_stamps arrivals;
    std::uint64_t command_arrived_us = 0;  // of the command being run
    std::vector<protocol::resp_plan> plans;  // of the batch being answered, in order
    std::string name;                        // CLIENT SETNAME

    // `arrived_us`: the kernel's moment when it gave one; else now, which is no earlier than arrival.
    void feed(std::string_view bytes, std::uint64_t arrived_us) {
        reader.feed(bytes);
        arrivals.note(reader.fed(), arrived_us ? arrived_us : stamp_now());
    }
    parsed next(std::vector<std::string_view>& args) {
        switch (reader.next(args)) {
            case protocol::resp_reader::result::need_more: return parsed::need_more;
            case protocol::resp_reader::result::error: return parsed::error;
            case protocol::resp_reader::result::command: break;
        }
        command_arrived_us = arrivals.at(reader.consumed());
        return parsed::request;
    }
    [[nodiscard]] std::size_t buffered() const noexcept { return reader.buffered(); }
    void release_if_empty() { reader.release_if_empty(); }
};

class resp_front {
public:
    using session = resp_session;
    using request = std::vector<std::string_view>;
    static constexpr bool stamps_arrivals = true;

    resp_front(node_id self, const cluster_view& view, limits_settings lim, std::string password, resp_context ctx)
        : self_(self), view_(view), limits_(lim), password_(std::move(password)), ctx_(std::move(ctx)) {
        forwarders_ = std::make_unique<thread_pool>(ctx_.forward ? forwarding_threads : 1);
        randombytes_buf(&writer_, sizeof writer_);
    }

    [[nodiscard]] protocol::resp_limits wire_limits() const noexcept {
        protocol::resp_limits l;
        l.max_bulk_bytes = std::max(limits_.max_key_bytes, limits_.max_value_bytes);
        return l;
    }

    [[nodiscard]] session open() const { return session(wire_limits()); }

    void malformed(session& s, connection& c) { error(c, "ERR " + s.reader.last_error()); }

    // Redis's order: an unknown command or a wrong count of arguments is said first (it reveals
    // nothing); AUTH, HELLO (which may carry AUTH) and QUIT need no password.
    [[nodiscard]] bool needs_password(const request& args) const {
        const auto name = resp_commands::lower(args[0]);
        const auto* ci = resp_commands::find_command(name);
        return ci && resp_commands::arity_ok(*ci, name, args.size()) && name != "auth" && name != "hello" && name != "quit";
    }
    void unauthenticated(const request&, session&, connection& c) { error(c, "NOAUTH Authentication required."); }

    handled handle(const request& args, session&, connection& c) { return execute(args, c) ? handled::next : handled::close; }

    // Once nothing is held: c.out is this batch's frames; each plan turns its share into RESP.
    void finish(session& s, connection& c) { finish_batch(s, c); }

private:
    using kind = protocol::resp_plan::kind;
    using args_t = std::vector<std::string_view>;
    using command_info = resp_commands::command_info;

    static resp_session& session_of(connection& c) noexcept { return pump<resp_front>::of(c); }

    // --- replies --------------------------------------------------------------------------------

    template <class F>
    static void text(connection& c, F&& write) {
        protocol::resp_plan p;
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
        off_the_loop(c, op, [this, op, flags, key = std::string(key), value = std::string(value)] {
            return ctx_.forward(op, key, value, flags);
        });
    }

    // Runs `work` (which waits on the network) on the front's threads; its reply is held in its
    // place until it comes, as our frame of `op`.
    template <class Work>
    void off_the_loop(connection& c, protocol::opcode op, Work work) {
        auto held = c.hold();
        auto conn = c.shared_from_this();
        auto run = [held, conn, op, work = std::move(work)] {
            const reply r = work();
            const auto code = r.answered ? r.code : protocol::status::unavailable;
            std::string_view why = r.value.empty() ? std::string_view(r.error) : std::string_view(r.value);
            protocol::append_frame(held->frame, {op, 0, code, 0, 0, 0}, {}, r.ok() ? std::string_view(r.value) : why);
            conn->release();
        };
        if (!forwarders_->post(std::move(run))) {  // stopping
            protocol::append_frame(held->frame, {op, 0, protocol::status::unavailable, 0, 0, 0}, {}, "this peer is stopping");
            conn->release();
        }
    }
    void plan(connection& c, kind how, std::size_t frames) {
        session_of(c).plans.push_back({how, static_cast<std::uint32_t>(frames), {}});
    }

    static void finish_batch(resp_session& s, connection& c) {
        auto& plans = s.plans;
        if (plans.empty()) return;
        thread_local std::string out;  // becomes c.out; the old c.out is the next batch's buffer
        out.clear();
        std::size_t at = 0;
        const auto any = protocol::frame_limits(~std::size_t{0}, ~std::size_t{0});  // our own frames
        auto next_frame = [&](protocol::header& h, std::string_view& value) {
            const auto d = protocol::decode(std::span<const std::byte, protocol::header_size>(
                                                reinterpret_cast<const std::byte*>(c.out.data() + at), protocol::header_size),
                                            any);
            h = d.h;
            value = std::string_view(c.out).substr(at + protocol::header_size + h.key_length, h.value_length);
            at += protocol::header_size + h.payload_size();
        };
        for (auto& p : plans) {
            if (p.how == kind::text) {
                out += p.text;
                continue;
            }
            std::string failed;
            std::string_view not_found;  // the first not-found answer's words
            std::int64_t count = 0;
            thread_local std::vector<std::optional<std::string_view>> values;
            values.clear();
            for (std::uint32_t i = 0; i < p.frames; ++i) {
                protocol::header h;
                std::string_view value;
                next_frame(h, value);
                if (h.code == protocol::status::ok) {
                    ++count;
                    values.emplace_back(value);
                } else if (h.code == protocol::status::not_found) {
                    values.emplace_back(std::nullopt);
                    if (not_found.empty()) not_found = value.empty() ? std::string_view("not found") : value;
                } else if (failed.empty()) {
                    failed = fmt::format("{} {}", h.code == protocol::status::unavailable ? "TRYAGAIN" : "ERR", value);
                }
            }
            if (!failed.empty()) {
                protocol::resp::error(out, failed);
                continue;
            }
            switch (p.how) {
                case kind::ok:  // writes are never "not found"; a registry change can be
                    if (count == static_cast<std::int64_t>(p.frames)) protocol::resp::simple(out, "OK");
                    else protocol::resp::error(out, fmt::format("ERR {}", not_found));
                    break;
                case kind::bulk:
                    if (values.front()) protocol::resp::bulk(out, *values.front());
                    else protocol::resp::null_bulk(out);
                    break;
                case kind::count_ok: protocol::resp::integer(out, count); break;
                case kind::values:
                    protocol::resp::array(out, values.size());
                    for (const auto& v : values) {
                        if (v) protocol::resp::bulk(out, *v);
                        else protocol::resp::null_bulk(out);
                    }
                    break;
                case kind::type: protocol::resp::simple(out, values.front() ? "string" : "none"); break;
                case kind::holders: {
                    auto hs = values.front() ? protocol::decode_holders(*values.front())
                                             : std::optional<std::vector<protocol::holder>>(std::vector<protocol::holder>{});
                    if (!hs) {
                        protocol::resp::error(out, "ERR a registry entry this peer cannot read");
                        break;
                    }
                    protocol::resp::array(out, hs->size());
                    for (const auto& h : *hs) protocol::resp::bulk(out, fmt::format("{} {}:{}", h.peer_id, h.host, h.port));
                    break;
                }
                case kind::set:
                case kind::set_get: {
                    auto outcome = values.front() ? protocol::decode_put_outcome(*values.front()) : std::nullopt;
                    if (!outcome) protocol::resp::error(out, "ERR a put answer this peer cannot read");
                    else if (p.how == kind::set && outcome->set) protocol::resp::simple(out, "OK");
                    else if (p.how == kind::set_get && outcome->had_value) protocol::resp::bulk(out, outcome->old_value);
                    else protocol::resp::null_bulk(out);
                    break;
                }
                case kind::first_bulk:
                    if (values.front()) protocol::resp::bulk(out, *values.front());
                    else protocol::resp::null_bulk(out);
                    break;
                case kind::expire: protocol::resp::integer(out, values.front() ? 1 : 0); break;
                case kind::persist: protocol::resp::integer(out, values.front() && *values.front() == "\1" ? 1 : 0); break;
                case kind::ttl:
                case kind::pttl: {
                    if (!values.front()) {
                        protocol::resp::integer(out, -2);
                        break;
                    }
                    const auto at = protocol::decode_expiry(*values.front());
                    if (!at || *at == 0) {
                        protocol::resp::integer(out, -1);
                        break;
                    }
                    const auto now = unix_ms_now();
                    const auto left = static_cast<std::int64_t>(*at > now ? *at - now : 0);
                    protocol::resp::integer(out, p.how == kind::pttl ? left : (left + 500) / 1000);
                    break;
                }
                case kind::text: break;
            }
        }
        plans.clear();
        c.out.swap(out);
    }

    // --- commands -------------------------------------------------------------------------------

    // False when the connection closes once its replies have gone.
    bool execute(const args_t& args, connection& c) {
        forwarding_ = false;
        thread_local std::string name;  // lower case; the worker's own, no allocation per command
        name.assign(args[0]);
        for (auto& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        const auto* ci = resp_commands::find_command(name);
        if (!ci) {
            std::string shown;
            for (std::size_t i = 1; i < args.size() && i < 4; ++i) shown += fmt::format("'{}' ", args[i]);
            error(c, fmt::format("ERR unknown command '{}', with args beginning with: {}", args[0], shown));
            return true;
        }
        const auto n = static_cast<int>(args.size());
        if (!resp_commands::arity_ok(*ci, name, args.size())) {
            error(c, fmt::format("ERR wrong number of arguments for '{}' command", name));
            return true;
        }
        // Cluster routing: the keys must share a slot this node holds.
        const auto& keys = resp_commands::keys_of(*ci, args);
        if (!keys.empty() && name != "dht.where") {
            const auto slot = key_slot(keys.front());
            for (auto k : keys) {
                if (k.size() > limits_.max_key_bytes) {
                    error(c, fmt::format("ERR key of {} bytes: this cluster's limit is {}", k.size(), limits_.max_key_bytes));
                    return true;
                }
                if (key_slot(k) != slot) {
                    error(c, "CROSSSLOT Keys in request don't hash to the same slot");
                    return true;
                }
            }
            if (auto moved = moved_to(slot)) {
                if (!ctx_.forward) {
                    error(c, *moved);
                    return true;
                }
                forwarding_ = true;  // this command's requests go to the key's holders
            }
        }
        if (name == "ping") {
            if (n > 2) error(c, "ERR wrong number of arguments for 'ping' command");
            else if (n == 2) text(c, [&](std::string& o) { protocol::resp::bulk(o, args[1]); });
            else text(c, [](std::string& o) { protocol::resp::simple(o, "PONG"); });
        } else if (name == "echo") {
            text(c, [&](std::string& o) { protocol::resp::bulk(o, args[1]); });
        } else if (name == "quit") {
            ok(c);
            return false;
        } else if (name == "hello") {
            return hello(args, c);
        } else if (name == "auth") {
            auth(args.back(), c);
        } else if (name == "client") {
            client(args, c);
        } else if (name == "select") {
            if (args[1] == "0") ok(c);
            else error(c, "ERR SELECT is not allowed in cluster mode");
        } else if (name == "readonly" || name == "readwrite") {
            ok(c);
        } else if (name == "get") {
            plan(c, kind::bulk, 1);
            issue(c, protocol::opcode::get, args[1]);
        } else if (name == "set" || name == "setex" || name == "psetex") {
            set(name, args, c);
        } else if (name == "getdel") {
            // A get, then a del, answered on this thread one after the other: not one step, so
            // a write from another client may fall between them.
            plan(c, kind::first_bulk, 2);
            issue(c, protocol::opcode::get, args[1]);
            issue(c, protocol::opcode::del, args[1]);
        } else if (name == "expire" || name == "pexpire" || name == "expireat" || name == "pexpireat") {
            if (n > 3) {
                error(c, fmt::format("ERR Unsupported option {}", args[3]));
                return true;
            }
            auto t = resp_commands::integer_arg(args[2]);
            if (!t) {
                error(c, "ERR value is not an integer or out of range");
                return true;
            }
            const bool ms = name[0] == 'p';
            const bool absolute = name.ends_with("at");
            const std::int64_t now = static_cast<std::int64_t>(unix_ms_now());
            std::int64_t at = absolute ? (ms ? *t : *t * 1000) : now + (ms ? *t : *t * 1000);
            if (at <= 0) at = 1;  // due already: the key goes
            plan(c, kind::expire, 1);
            issue(c, protocol::opcode::expire, args[1], protocol::encode_u64(static_cast<std::uint64_t>(at)));
        } else if (name == "persist") {
            plan(c, kind::persist, 1);
            issue(c, protocol::opcode::expire, args[1], protocol::encode_u64(0));
        } else if (name == "ttl" || name == "pttl") {
            plan(c, name == "ttl" ? kind::ttl : kind::pttl, 1);
            issue(c, protocol::opcode::get, args[1], {}, protocol::flag_options);
        } else if (name == "del" || name == "unlink") {
            plan(c, kind::count_ok, keys.size());
            for (auto k : keys) issue(c, protocol::opcode::del, k);
        } else if (name == "exists") {
            plan(c, kind::count_ok, keys.size());
            for (auto k : keys) issue(c, protocol::opcode::get, k);
        } else if (name == "mget") {
            plan(c, kind::values, keys.size());
            for (auto k : keys) issue(c, protocol::opcode::get, k);
        } else if (name == "mset") {
            for (int i = 2; i < n; i += 2)
                if (args[static_cast<std::size_t>(i)].size() > limits_.max_value_bytes) {
                    error(c, fmt::format("ERR value of {} bytes: this cluster's limit is {}", args[static_cast<std::size_t>(i)].size(),
                                         limits_.max_value_bytes));
                    return true;
                }
            plan(c, kind::ok, keys.size());
            for (int i = 1; i < n; i += 2)
                issue(c, protocol::opcode::put, args[static_cast<std::size_t>(i)], args[static_cast<std::size_t>(i) + 1]);
        } else if (name == "type") {
            plan(c, kind::type, 1);
            issue(c, protocol::opcode::get, args[1]);
        } else if (name == "dbsize") {
            text(c, [&](std::string& o) { protocol::resp::integer(o, static_cast<std::int64_t>(ctx_.key_count())); });
        } else if (name == "info") {
            info(args, c);
        } else if (name == "config") {
            config(args, c);
        } else if (name == "command") {
            command(args, c);
        } else if (name == "cluster") {
            cluster(args, c);
        } else if (name == "dht.search") {
            plan(c, kind::holders, 1);
            issue(c, protocol::opcode::search, args[1]);
        } else if (name == "dht.where") {
            where(args[1], c);
        } else if (name == "dht.register" || name == "dht.unregister") {
            const auto& act = name == "dht.register" ? ctx_.announce : ctx_.withdraw;
            if (!act) {
                error(c, "ERR this peer has no shared folder to register from");
                return true;
            }
            plan(c, kind::ok, 1);
            off_the_loop(c, name == "dht.register" ? protocol::opcode::register_file : protocol::opcode::unregister_file,
                         [&act, file = std::string(args[1])] { return act(file); });
        }
        return true;
    }

    // An integer argument as Redis reads one, or nothing.
    // SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL], SETEX key s value, PSETEX key ms value.
    void set(const std::string& name, const args_t& args, connection& c) {
        using protocol::put_options;
        put_options o;
        std::string_view key = args[1], value = args[2];
        const auto now = static_cast<std::int64_t>(unix_ms_now());
        auto expiry_from = [&](std::string_view unit, std::string_view text) -> bool {
            auto t = resp_commands::integer_arg(text);
            if (!t) {
                error(c, "ERR value is not an integer or out of range");
                return false;
            }
            const bool ms = unit == "PX" || unit == "PXAT";
            const bool absolute = unit == "EXAT" || unit == "PXAT";
            if (*t <= 0 || *t > (ms ? 1'000'000'000'000'000 : 1'000'000'000'000'000 / 1000)) {
                error(c, fmt::format("ERR invalid expire time in '{}' command", name));
                return false;
            }
            const std::int64_t at = absolute ? (ms ? *t : *t * 1000) : now + (ms ? *t : *t * 1000);
            o.mask |= put_options::expires;
            o.expires_at_ms = static_cast<std::uint64_t>(std::max<std::int64_t>(at, 1));
            return true;
        };
        if (name != "set") {  // SETEX / PSETEX key time value
            value = args[3];
            if (!expiry_from(name == "setex" ? "EX" : "PX", args[2])) return;
        } else {
            bool timed = false;
            for (std::size_t i = 3; i < args.size(); ++i) {
                const auto opt = resp_commands::upper(args[i]);
                const bool has_next = i + 1 < args.size();
                if (opt == "NX" && !(o.mask & put_options::if_present)) {
                    o.mask |= put_options::if_absent;
                } else if (opt == "XX" && !(o.mask & put_options::if_absent)) {
                    o.mask |= put_options::if_present;
                } else if (opt == "GET") {
                    o.mask |= put_options::return_old;
                } else if (opt == "KEEPTTL" && !timed) {
                    o.mask |= put_options::keep_ttl;
                    timed = true;
                } else if ((opt == "EX" || opt == "PX" || opt == "EXAT" || opt == "PXAT") && !timed && has_next) {
                    if (!expiry_from(opt, args[++i])) return;
                    timed = true;
                } else {
                    error(c, "ERR syntax error");
                    return;
                }
            }
        }
        if (value.size() > limits_.max_value_bytes) {
            error(c, fmt::format("ERR value of {} bytes: this cluster's limit is {}", value.size(), limits_.max_value_bytes));
            return;
        }
        if (o.mask == 0) {  // a plain put, as a binary client's
            plan(c, kind::ok, 1);
            issue(c, protocol::opcode::put, key, value);
            return;
        }
        thread_local std::string with;
        with.clear();
        protocol::append(with, o);
        with += value;
        plan(c, (o.mask & put_options::return_old) ? kind::set_get : kind::set, 1);
        issue(c, protocol::opcode::put, key, with, protocol::flag_options);
    }

    // -MOVED to the home of `slot` when this node does not hold it, or nothing.
    std::optional<std::string> moved_to(slot_t slot) const {
        const auto& map = view_.current();
        if (map.holds(self_, slot)) return std::nullopt;
        const auto h = map.holders(slot);
        if (h.empty()) return fmt::format("CLUSTERDOWN Hash slot not served");
        const auto* home = map.find(h.front());
        if (!home || !home->resp_port)
            return fmt::format("ERR slot {} is held by peer {}, which has no resp_port", slot, h.front());
        return fmt::format("MOVED {} {}:{}", slot, home->host, home->resp_port);
    }

    // Redis's words for a subcommand it does not know, or one given the wrong number of arguments.
    static void subcommand_error(connection& c, std::string_view command, std::string_view sub, bool known) {
        if (known)
            error(c, fmt::format("ERR wrong number of arguments for '{}|{}' command", resp_commands::lower(command), resp_commands::lower(sub)));
        else
            error(c, fmt::format("ERR unknown subcommand '{}'. Try {} HELP.", sub, resp_commands::upper(command)));
    }

    bool hello(const args_t& args, connection& c) {
        std::size_t i = 1;
        if (args.size() > 1) {
            if (args[1] != "2") {
                if (args[1] == "3" || args[1] == "1" || std::all_of(args[1].begin(), args[1].end(), ::isdigit))
                    error(c, "NOPROTO unsupported protocol version");
                else
                    error(c, "ERR Protocol version is not an integer or out of range");
                return true;
            }
            i = 2;
        }
        for (; i < args.size(); ++i) {
            const auto opt = resp_commands::upper(args[i]);
            if (opt == "AUTH" && i + 2 < args.size()) {
                if (!check_password(args[i + 2])) {
                    error(c, "WRONGPASS invalid username-password pair or user is disabled.");
                    return true;
                }
                c.authenticated = true;
                i += 2;
            } else if (opt == "SETNAME" && i + 1 < args.size()) {
                session_of(c).name = std::string(args[++i]);
            } else {
                error(c, fmt::format("ERR Syntax error in HELLO option '{}'", args[i]));
                return true;
            }
        }
        if (!password_.empty() && !c.authenticated) {
            error(c, "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> "
                     "AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol "
                     "version at the same time");
            return true;
        }
        text(c, [&](std::string& o) {
            protocol::resp::array(o, 14);
            protocol::resp::bulk(o, "server");
            protocol::resp::bulk(o, "redis");
            protocol::resp::bulk(o, "version");
            protocol::resp::bulk(o, "7.0.0");
            protocol::resp::bulk(o, "proto");
            protocol::resp::integer(o, 2);
            protocol::resp::bulk(o, "id");
            protocol::resp::integer(o, static_cast<std::int64_t>(c.stream.fd()));
            protocol::resp::bulk(o, "mode");
            protocol::resp::bulk(o, "cluster");
            protocol::resp::bulk(o, "role");
            protocol::resp::bulk(o, "master");
            protocol::resp::bulk(o, "modules");
            protocol::resp::array(o, 0);
        });
        return true;
    }

    bool check_password(std::string_view given) const {
        return given.size() == password_.size() && sodium_memcmp(given.data(), password_.data(), given.size()) == 0;
    }

    void auth(std::string_view given, connection& c) {
        if (password_.empty()) {
            error(c, "ERR AUTH <password> called without any password configured for the default user. Are you sure "
                     "your configuration is correct?");
        } else if (!check_password(given)) {
            error(c, "WRONGPASS invalid username-password pair or user is disabled.");
        } else {
            c.authenticated = true;
            ok(c);
        }
    }

    void client(const args_t& args, connection& c) {
        const auto sub = resp_commands::upper(args[1]);
        if (sub == "SETNAME" && args.size() == 3) {
            if (std::any_of(args[2].begin(), args[2].end(), [](char ch) { return ch <= ' ' || ch > '~'; })) {
                error(c, "ERR Client names cannot contain spaces, newlines or special characters.");
                return;
            }
            session_of(c).name = std::string(args[2]);
            ok(c);
        } else if (sub == "GETNAME" && args.size() == 2) {
            text(c, [&](std::string& o) {
                if (session_of(c).name.empty()) protocol::resp::null_bulk(o);
                else protocol::resp::bulk(o, session_of(c).name);
            });
        } else if (sub == "ID" && args.size() == 2) {
            text(c, [&](std::string& o) { protocol::resp::integer(o, c.stream.fd()); });
        } else if (sub == "SETINFO" && args.size() == 4) {
            ok(c);
        } else {
            subcommand_error(c, "client", args[1], sub == "SETNAME" || sub == "GETNAME" || sub == "ID" || sub == "SETINFO");
        }
    }

    void info(const args_t& args, connection& c) {
        std::vector<std::string> wanted;
        for (std::size_t i = 1; i < args.size(); ++i) wanted.push_back(resp_commands::lower(args[i]));
        auto want = [&](std::string_view section) {
            return wanted.empty() || std::find(wanted.begin(), wanted.end(), "all") != wanted.end() ||
                   std::find(wanted.begin(), wanted.end(), "everything") != wanted.end() ||
                   std::find(wanted.begin(), wanted.end(), "default") != wanted.end() ||
                   std::find(wanted.begin(), wanted.end(), section) != wanted.end();
        };
        // Our figures, name=value per line.
        std::vector<std::pair<std::string, std::string>> figures;
        const auto lines = ctx_.stats();
        for (std::size_t at = 0; at < lines.size();) {
            auto end = lines.find('\n', at);
            if (end == std::string::npos) end = lines.size();
            const std::string_view line(lines.data() + at, end - at);
            if (auto eq = line.find('='); eq != std::string_view::npos)
                figures.emplace_back(std::string(line.substr(0, eq)), std::string(line.substr(eq + 1)));
            at = end + 1;
        }
        auto figure = [&](std::string_view key) -> std::string {
            for (const auto& [k, v] : figures)
                if (k == key) return v;
            return "0";
        };
        const auto& map = view_.current();
        const auto* me = map.find(self_);
        std::string body;
        auto out = std::back_inserter(body);
        if (want("server"))
            fmt::format_to(out, "# Server\r\nredis_version:7.0.0\r\ndhtkit_node_id:{}\r\nredis_mode:cluster\r\nos:Linux\r\n"
                                "tcp_port:{}\r\nuptime_in_seconds:{}\r\n\r\n",
                           self_, me ? me->resp_port : 0, figure("uptime_s"));
        if (want("clients")) fmt::format_to(out, "# Clients\r\nconnected_clients:{}\r\n\r\n", figure("connections_open"));
        if (want("stats")) {
            fmt::format_to(out, "# Stats\r\ntotal_connections_received:{}\r\n", figure("connections_total"));
            for (const auto& [k, v] : figures)
                if (v.find_first_of(" \r") == std::string::npos) fmt::format_to(out, "dhtkit_{}:{}\r\n", k, v);
            body += "\r\n";
        }
        if (want("replication")) {
            fmt::format_to(out, "# Replication\r\nrole:master\r\nconnected_slaves:0\r\ndhtkit_backups:{}\r\n\r\n",
                           figure("backups"));
        }
        if (want("cluster")) body += "# Cluster\r\ncluster_enabled:1\r\n\r\n";
        if (want("keyspace")) {
            const auto keys = ctx_.key_count();
            body += "# Keyspace\r\n";
            if (keys) fmt::format_to(out, "db0:keys={},expires=0,avg_ttl=0\r\n", keys);
        }
        text(c, [&](std::string& o) { protocol::resp::bulk(o, body); });
    }

    void config(const args_t& args, connection& c) {
        const auto sub = resp_commands::upper(args[1]);
        if (sub != "GET" || args.size() < 3) {
            subcommand_error(c, "config", args[1], sub == "GET");
            return;
        }
        std::vector<std::pair<std::string_view, std::string>> known = {
            {"save", ""},
            {"appendonly", ctx_.appendonly},
            {"maxmemory", "0"},
            {"databases", "1"},
            {"cluster-enabled", "yes"},
        };
        std::vector<std::pair<std::string_view, std::string>> found;
        for (std::size_t i = 2; i < args.size(); ++i) {
            const auto wanted = resp_commands::lower(args[i]);
            for (const auto& kv : known)
                if (wanted == "*" || wanted == kv.first) found.push_back(kv);
        }
        text(c, [&](std::string& o) {
            protocol::resp::array(o, found.size() * 2);
            for (const auto& [k, v] : found) {
                protocol::resp::bulk(o, k);
                protocol::resp::bulk(o, v);
            }
        });
    }

    void command(const args_t& args, connection& c) {
        thread_local std::string o;
        o.clear();
        const auto sub = args.size() > 1 ? resp_commands::upper(args[1]) : std::string();
        if (!resp_commands::command_reply(o, sub, args)) return subcommand_error(c, "command", args[1], false);
        text(c, [&](std::string& out) { out += o; });
    }

    void cluster(const args_t& args, connection& c) {
        const auto sub = resp_commands::upper(args[1]);
        const auto& map = view_.current();
        if (sub == "SLOTS" && args.size() == 2) {
            // Every cluster client asks on connecting and after each MOVED; under the dynamic
            // policy the reply lists thousands of ranges (megabytes): made once per map.
            const auto reply = slots_reply(map);
            text(c, [&](std::string& out) { out += *reply; });
            return;
        }
        thread_local std::string o;
        o.clear();
        if (resp_cluster::reply(o, sub, args, map, self_)) {
            text(c, [&](std::string& out) { out += o; });
            return;
        }
        subcommand_error(c, "cluster", args[1], resp_cluster::knows(sub));
    }

    // CLUSTER SLOTS for `map`, made once per map (its digest).
    std::shared_ptr<const std::string> slots_reply(const cluster_map& map) {
        std::lock_guard lock(slots_mutex_);
        if (!slots_cached_ || slots_digest_ != map.digest()) {
            auto made = std::make_shared<std::string>();
            (void)resp_cluster::reply(*made, "SLOTS", {"CLUSTER", "SLOTS"}, map, self_);
            slots_cached_ = std::move(made);
            slots_digest_ = map.digest();
        }
        return slots_cached_;
    }

    void where(std::string_view key, connection& c) {
        text(c, [&](std::string& o) { resp_cluster::where(o, key, view_.current()); });
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
    std::unique_ptr<thread_pool> forwarders_;  // forwarded requests and DHT.REGISTER
    std::uint64_t writer_ = 0;                 // the writer of the versions this front stamps (random)
    std::atomic<std::uint64_t> sequence_{0};
    std::mutex slots_mutex_;
    std::shared_ptr<const std::string> slots_cached_;  // guarded by slots_mutex_
    std::uint64_t slots_digest_ = 0;                   // guarded by slots_mutex_
    inline static thread_local bool forwarding_ = false;  // the command being planned goes to the holders
};

}  // namespace dhtkit
