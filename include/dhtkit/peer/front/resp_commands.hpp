#pragma once
// The RESP front's command table: each command's name, arity, keys and flags as Redis's COMMAND
// lists them, the lookups the front makes with it (arity, where the keys are), and COMMAND's own
// reply. A command is answered only if it is here.

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <iterator>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <variant>
#include <vector>

#include <fmt/format.h>

#include "dhtkit/cluster/slots.hpp"
#include "dhtkit/protocol/messages.hpp"
#include "dhtkit/protocol/resp.hpp"

namespace dhtkit::resp_commands {

[[nodiscard]] inline std::string upper(std::string_view s) {
    std::string u(s);
    for (auto& ch : u) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    return u;
}
[[nodiscard]] inline std::string lower(std::string_view s) {
    std::string u(s);
    for (auto& ch : u) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return u;
}

// The commands this front knows, in the order of `commands` below (checked there).
enum class command_id : std::uint8_t {
    ping, echo, quit, hello, auth, client, select, readonly, readwrite, get, set, setex, psetex, getdel,
    expire, pexpire, expireat, pexpireat, persist, ttl, pttl, del, unlink, exists, mget, mset, type, dbsize,
    info, config, command, cluster, dht_search, dht_register, dht_unregister, dht_where
};

struct command_info {
    std::string_view name;  // lower case, as COMMAND lists it
    command_id id;
    int arity;  // Redis's: n exactly, -n at least n (the name counts)
    int first_key, last_key, step;
    std::string_view flags;  // space-separated
};
inline constexpr command_info commands[] = {
    {"ping", command_id::ping, -1, 0, 0, 0, "fast"},
    {"echo", command_id::echo, 2, 0, 0, 0, "fast"},
    {"quit", command_id::quit, -1, 0, 0, 0, "fast"},
    {"hello", command_id::hello, -1, 0, 0, 0, "fast"},
    {"auth", command_id::auth, -2, 0, 0, 0, "fast"},
    {"client", command_id::client, -2, 0, 0, 0, "admin"},
    {"select", command_id::select, 2, 0, 0, 0, "fast"},
    {"readonly", command_id::readonly, 1, 0, 0, 0, "fast"},
    {"readwrite", command_id::readwrite, 1, 0, 0, 0, "fast"},
    {"get", command_id::get, 2, 1, 1, 1, "readonly fast"},
    {"set", command_id::set, -3, 1, 1, 1, "write"},
    {"setex", command_id::setex, 4, 1, 1, 1, "write"},
    {"psetex", command_id::psetex, 4, 1, 1, 1, "write"},
    {"getdel", command_id::getdel, 2, 1, 1, 1, "write fast"},
    {"expire", command_id::expire, -3, 1, 1, 1, "write fast"},
    {"pexpire", command_id::pexpire, -3, 1, 1, 1, "write fast"},
    {"expireat", command_id::expireat, -3, 1, 1, 1, "write fast"},
    {"pexpireat", command_id::pexpireat, -3, 1, 1, 1, "write fast"},
    {"persist", command_id::persist, 2, 1, 1, 1, "write fast"},
    {"ttl", command_id::ttl, 2, 1, 1, 1, "readonly fast"},
    {"pttl", command_id::pttl, 2, 1, 1, 1, "readonly fast"},
    {"del", command_id::del, -2, 1, -1, 1, "write"},
    {"unlink", command_id::unlink, -2, 1, -1, 1, "write fast"},
    {"exists", command_id::exists, -2, 1, -1, 1, "readonly fast"},
    {"mget", command_id::mget, -2, 1, -1, 1, "readonly fast"},
    {"mset", command_id::mset, -3, 1, -1, 2, "write"},
    {"type", command_id::type, 2, 1, 1, 1, "readonly fast"},
    {"dbsize", command_id::dbsize, 1, 0, 0, 0, "readonly fast"},
    {"info", command_id::info, -1, 0, 0, 0, "loading stale"},
    {"config", command_id::config, -2, 0, 0, 0, "admin"},
    {"command", command_id::command, -1, 0, 0, 0, "loading stale"},
    {"cluster", command_id::cluster, -2, 0, 0, 0, "stale"},
    {"dht.search", command_id::dht_search, 2, 1, 1, 1, "readonly"},
    {"dht.register", command_id::dht_register, 2, 0, 0, 0, "write"},  // NAME: a file of this peer's shared folder
    {"dht.unregister", command_id::dht_unregister, 2, 0, 0, 0, "write"},
    {"dht.where", command_id::dht_where, 2, 1, 1, 1, "readonly fast"},
};
inline constexpr bool ids_in_table_order() {
    for (std::size_t i = 0; i < std::size(commands); ++i)
        if (static_cast<std::size_t>(commands[i].id) != i) return false;
    return true;
}
static_assert(ids_in_table_order(), "resp_commands: command_id and the table list the commands in one order");

// Redis's words for a value over this cluster's limit, or nothing.
[[nodiscard]] inline std::optional<std::string> value_over(std::string_view value, std::size_t limit) {
    if (value.size() <= limit) return std::nullopt;
    return fmt::format("ERR value of {} bytes: this cluster's limit is {}", value.size(), limit);
}

[[nodiscard]] inline bool arity_ok(const command_info& ci, std::size_t count) noexcept {
    const auto n = static_cast<int>(count);
    return !((ci.arity > 0 && n != ci.arity) || (ci.arity < 0 && n < -ci.arity) || (ci.id == command_id::mset && n % 2 == 0));
}
// The entry of command `name`, written in any case (Redis's command names are case-insensitive);
// its `name` is the lower-case spelling the rest of the front compares with.
[[nodiscard]] inline const command_info* find_command(std::string_view name) {
    // ASCII folding, not std::tolower: command names are ASCII, and this runs for every command.
    auto same = [](char a, char b) { return (a >= 'A' && a <= 'Z' ? static_cast<char>(a + ('a' - 'A')) : a) == b; };
    for (const auto& c : commands)
        if (c.name.size() == name.size() && std::equal(name.begin(), name.end(), c.name.begin(), same)) return &c;
    return nullptr;
}

// The keys of a command, per its entry: first_key to last_key (negative: from the end) by step.
// Reuses the worker's own vector: valid until its next call.
[[nodiscard]] inline const std::vector<std::string_view>& keys_of(const command_info& ci, const std::vector<std::string_view>& args) {
    thread_local std::vector<std::string_view> keys;
    keys.clear();
    if (ci.first_key == 0) return keys;
    const int last = ci.last_key < 0 ? static_cast<int>(args.size()) + ci.last_key : ci.last_key;
    for (int i = ci.first_key; i <= last && i < static_cast<int>(args.size()); i += ci.step) keys.push_back(args[i]);
    return keys;
}

[[nodiscard]] inline std::optional<std::int64_t> integer_arg(std::string_view s) {
    std::int64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
    return v;
}

// COMMAND's entry for one command: name, arity, flags, first key, last key, step.
inline void info(std::string& o, const command_info& ci) {
    protocol::resp::array(o, 6);
    protocol::resp::bulk(o, ci.name);
    protocol::resp::integer(o, ci.arity);
    std::vector<std::string_view> flags;
    for (std::size_t at = 0; at < ci.flags.size();) {
        auto end = ci.flags.find(' ', at);
        if (end == std::string_view::npos) end = ci.flags.size();
        flags.push_back(ci.flags.substr(at, end - at));
        at = end + 1;
    }
    protocol::resp::array(o, flags.size());
    for (auto f : flags) protocol::resp::simple(o, f);
    protocol::resp::integer(o, ci.first_key);
    protocol::resp::integer(o, ci.last_key);
    protocol::resp::integer(o, ci.step);
}

// COMMAND [COUNT | INFO name... | DOCS]: `sub` upper case (empty: the whole table). False for a
// subcommand it does not know (nothing appended).
inline bool command_reply(std::string& o, std::string_view sub, const std::vector<std::string_view>& args) {
    if (sub.empty()) {
        protocol::resp::array(o, std::size(commands));
        for (const auto& ci : commands) info(o, ci);
    } else if (sub == "COUNT") {
        protocol::resp::integer(o, static_cast<std::int64_t>(std::size(commands)));
    } else if (sub == "INFO") {
        protocol::resp::array(o, args.size() - 2);
        for (std::size_t i = 2; i < args.size(); ++i) {
            if (const auto* ci = find_command(args[i])) info(o, *ci);
            else protocol::resp::null_bulk(o);
        }
    } else if (sub == "DOCS") {
        // Names and summaries would be all we have: clients that ask (redis-cli, for its hints)
        // do without them.
        protocol::resp::array(o, 0);
    } else {
        return false;
    }
    return true;
}

// The one slot of a command's keys, or why they cannot be served together, in Redis's words: one
// is longer than this cluster allows, or they do not all hash to one slot.
[[nodiscard]] inline std::variant<slot_t, std::string> slot_of_keys(const std::vector<std::string_view>& keys,
                                                                    std::size_t max_key_bytes) {
    auto too_long = [&](std::string_view k) {
        return "ERR key of " + std::to_string(k.size()) + " bytes: this cluster's limit is " + std::to_string(max_key_bytes);
    };
    if (keys.front().size() > max_key_bytes) return too_long(keys.front());
    const auto slot = key_slot(keys.front());
    for (std::size_t i = 1; i < keys.size(); ++i) {
        if (keys[i].size() > max_key_bytes) return too_long(keys[i]);
        if (key_slot(keys[i]) != slot) return std::string("CROSSSLOT Keys in request don't hash to the same slot");
    }
    return slot;
}

// A time argument as a moment in milliseconds since the epoch: `t` in seconds or milliseconds,
// from `now_ms` or from the epoch. None when that moment is past what a signed 64-bit count of
// milliseconds holds (Redis's bound, so that no expiry wraps round into the past).
[[nodiscard]] inline std::optional<std::int64_t> moment_ms(std::int64_t t, bool seconds, bool absolute, std::int64_t now_ms) {
    constexpr auto most = std::numeric_limits<std::int64_t>::max();
    constexpr auto least = std::numeric_limits<std::int64_t>::min();
    if (seconds) {
        if (t > most / 1000 || t < least / 1000) return std::nullopt;
        t *= 1000;
    }
    const std::int64_t base = absolute ? 0 : now_ms;
    if (t > most - base) return std::nullopt;
    return t + base;
}

// EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT key time (`name` lower case): the moment the key goes, in
// milliseconds since the epoch (1 when it is due already), or Redis's error. No NX/XX/GT/LT.
[[nodiscard]] inline std::variant<std::uint64_t, std::string> parse_expire(std::string_view name,
                                                                           const std::vector<std::string_view>& args,
                                                                           std::int64_t now_ms) {
    if (args.size() > 3) return "ERR Unsupported option " + std::string(args[3]);
    auto t = integer_arg(args[2]);
    if (!t) return std::string("ERR value is not an integer or out of range");
    const auto at = moment_ms(*t, name[0] != 'p', name.ends_with("at"), now_ms);
    if (!at) return "ERR invalid expire time in '" + std::string(name) + "' command";
    return static_cast<std::uint64_t>(std::max<std::int64_t>(*at, 1));
}

// What SET, SETEX and PSETEX ask: a put of `value` with `options`.
struct set_request {
    protocol::put_options options;
    std::string_view value;
};

// SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL], SETEX key s value, PSETEX key
// ms value (`name` lower case; the arity checked): the put, or Redis's error for the arguments.
// `now_ms`: milliseconds since the epoch, which relative expiries count from.
[[nodiscard]] inline std::variant<set_request, std::string> parse_set(std::string_view name,
                                                                      const std::vector<std::string_view>& args,
                                                                      std::int64_t now_ms) {
    using protocol::put_options;
    set_request r{{}, args[2]};
    std::string error;
    auto expiry_from = [&](std::string_view unit, std::string_view text) -> bool {
        auto t = integer_arg(text);
        if (!t) {
            error = "ERR value is not an integer or out of range";
            return false;
        }
        const bool seconds = unit == "EX" || unit == "EXAT";
        const bool absolute = unit == "EXAT" || unit == "PXAT";
        const auto at = *t > 0 ? moment_ms(*t, seconds, absolute, now_ms) : std::nullopt;
        if (!at) {
            error = "ERR invalid expire time in '" + std::string(name) + "' command";
            return false;
        }
        r.options.mask |= put_options::expires;
        r.options.expires_at_ms = static_cast<std::uint64_t>(*at);
        return true;
    };
    if (name != "set") {  // SETEX / PSETEX key time value
        r.value = args[3];
        if (!expiry_from(name == "setex" ? "EX" : "PX", args[2])) return error;
        return r;
    }
    bool timed = false;
    for (std::size_t i = 3; i < args.size(); ++i) {
        const auto opt = upper(args[i]);
        const bool has_next = i + 1 < args.size();
        if (opt == "NX" && !(r.options.mask & put_options::if_present)) {
            r.options.mask |= put_options::if_absent;
        } else if (opt == "XX" && !(r.options.mask & put_options::if_absent)) {
            r.options.mask |= put_options::if_present;
        } else if (opt == "GET") {
            r.options.mask |= put_options::return_old;
        } else if (opt == "KEEPTTL" && !timed) {
            r.options.mask |= put_options::keep_ttl;
            timed = true;
        } else if ((opt == "EX" || opt == "PX" || opt == "EXAT" || opt == "PXAT") && !timed && has_next) {
            if (!expiry_from(opt, args[++i])) return error;
            timed = true;
        } else {
            return std::string("ERR syntax error");
        }
    }
    return r;
}

}  // namespace dhtkit::resp_commands
