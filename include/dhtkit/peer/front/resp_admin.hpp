#pragma once
// The RESP front's connection and server commands, answered here with no request to any
// service: HELLO, AUTH, CLIENT, INFO and CONFIG GET, in Redis's words (a client library checks
// them). Each writes its whole reply, or its error, to `o`.

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <sodium.h>

#include "dhtkit/cluster/cluster_map.hpp"
#include "dhtkit/peer/figures.hpp"
#include "dhtkit/peer/front/resp_commands.hpp"
#include "dhtkit/protocol/resp.hpp"

namespace dhtkit::resp_admin {

using args_t = std::vector<std::string_view>;

// Redis's words for a subcommand it does not know, or one given the wrong number of arguments.
inline void subcommand_error(std::string& o, std::string_view command, std::string_view sub, bool known) {
    if (known)
        protocol::resp::error(o, fmt::format("ERR wrong number of arguments for '{}|{}' command",
                                             resp_commands::lower(command), resp_commands::lower(sub)));
    else
        protocol::resp::error(o, fmt::format("ERR unknown subcommand '{}'. Try {} HELP.", sub, resp_commands::upper(command)));
}

// COMMAND [COUNT | INFO name ... | DOCS ...], from the command table; Redis's error for another
// subcommand.
inline void command(std::string& o, const std::vector<std::string_view>& args) {
    const auto sub = args.size() > 1 ? resp_commands::upper(args[1]) : std::string();
    if (!resp_commands::command_reply(o, sub, args)) subcommand_error(o, "command", args[1], false);
}

// In constant time: how long the two agree does not show in how long the answer takes.
[[nodiscard]] inline bool password_matches(std::string_view given, std::string_view password) {
    return given.size() == password.size() && sodium_memcmp(given.data(), password.data(), given.size()) == 0;
}

// What a connection's commands may change: whether it gave the password, and its name.
struct client_state {
    bool& authenticated;
    std::string& name;
    int id;  // CLIENT ID, HELLO's id: the connection's descriptor
};

// HELLO [2 [AUTH user pass] [SETNAME name]]: RESP2 only.
// False when it carried a wrong password.
inline bool hello(std::string& o, const args_t& args, std::string_view password, client_state c) {
    std::size_t i = 1;
    if (args.size() > 1) {
        if (args[1] != "2") {
            if (args[1] == "3" || args[1] == "1" || std::all_of(args[1].begin(), args[1].end(), ::isdigit))
                protocol::resp::error(o, "NOPROTO unsupported protocol version");
            else
                protocol::resp::error(o, "ERR Protocol version is not an integer or out of range");
            return true;
        }
        i = 2;
    }
    for (; i < args.size(); ++i) {
        const auto opt = resp_commands::upper(args[i]);
        if (opt == "AUTH" && i + 2 < args.size()) {
            if (!password_matches(args[i + 2], password)) {
                protocol::resp::error(o, "WRONGPASS invalid username-password pair or user is disabled.");
                return false;
            }
            c.authenticated = true;
            i += 2;
        } else if (opt == "SETNAME" && i + 1 < args.size()) {
            c.name = std::string(args[++i]);
        } else {
            protocol::resp::error(o, fmt::format("ERR Syntax error in HELLO option '{}'", args[i]));
            return true;
        }
    }
    if (!password.empty() && !c.authenticated) {
        protocol::resp::error(o, "NOAUTH HELLO must be called with the client already authenticated, otherwise the "
                                 "HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and "
                                 "select the RESP protocol version at the same time");
        return true;
    }
    protocol::resp::array(o, 14);
    protocol::resp::bulk(o, "server");
    protocol::resp::bulk(o, "redis");
    protocol::resp::bulk(o, "version");
    protocol::resp::bulk(o, "7.0.0");
    protocol::resp::bulk(o, "proto");
    protocol::resp::integer(o, 2);
    protocol::resp::bulk(o, "id");
    protocol::resp::integer(o, c.id);
    protocol::resp::bulk(o, "mode");
    protocol::resp::bulk(o, "cluster");
    protocol::resp::bulk(o, "role");
    protocol::resp::bulk(o, "master");
    protocol::resp::bulk(o, "modules");
    protocol::resp::array(o, 0);
    return true;
}

// False when `given` is a wrong password: the front then closes the connection once it has
// answered, so that each guess costs a connection (Redis lets one connection try thousands a
// second).
inline bool auth(std::string& o, std::string_view given, std::string_view password, client_state c) {
    if (password.empty()) {
        protocol::resp::error(o, "ERR AUTH <password> called without any password configured for the default user. "
                                 "Are you sure your configuration is correct?");
    } else if (!password_matches(given, password)) {
        protocol::resp::error(o, "WRONGPASS invalid username-password pair or user is disabled.");
        return false;
    } else {
        c.authenticated = true;
        protocol::resp::simple(o, "OK");
    }
    return true;
}

// CLIENT SETNAME / GETNAME / ID / SETINFO.
inline void client(std::string& o, const args_t& args, client_state c) {
    const auto sub = resp_commands::upper(args[1]);
    if (sub == "SETNAME" && args.size() == 3) {
        if (std::any_of(args[2].begin(), args[2].end(), [](char ch) { return ch <= ' ' || ch > '~'; })) {
            protocol::resp::error(o, "ERR Client names cannot contain spaces, newlines or special characters.");
            return;
        }
        c.name = std::string(args[2]);
        protocol::resp::simple(o, "OK");
    } else if (sub == "GETNAME" && args.size() == 2) {
        if (c.name.empty()) protocol::resp::null_bulk(o);
        else protocol::resp::bulk(o, c.name);
    } else if (sub == "ID" && args.size() == 2) {
        protocol::resp::integer(o, c.id);
    } else if (sub == "SETINFO" && args.size() == 4) {
        protocol::resp::simple(o, "OK");
    } else {
        subcommand_error(o, "client", args[1], sub == "SETNAME" || sub == "GETNAME" || sub == "ID" || sub == "SETINFO");
    }
}

// What INFO reports of this node.
struct server_facts {
    node_id self = 0;
    std::uint16_t resp_port = 0;
    const figures& stats;                           // what our `stats` lists
    const std::function<std::size_t()>& key_count;  // a walk over the table: asked only for # Keyspace
};

// INFO [section...]: Redis's sections, with our figures as dhtkit_* lines under # Stats.
inline void info(std::string& o, const args_t& args, const server_facts& facts) {
    std::vector<std::string> wanted;
    for (std::size_t i = 1; i < args.size(); ++i) wanted.push_back(resp_commands::lower(args[i]));
    auto want = [&](std::string_view section) {
        return wanted.empty() || std::find(wanted.begin(), wanted.end(), "all") != wanted.end() ||
               std::find(wanted.begin(), wanted.end(), "everything") != wanted.end() ||
               std::find(wanted.begin(), wanted.end(), "default") != wanted.end() ||
               std::find(wanted.begin(), wanted.end(), section) != wanted.end();
    };
    auto figure = [&](std::string_view name) -> std::string {
        const auto* v = facts.stats.find(name);
        return v ? figures::text(*v) : "0";
    };
    std::string body;
    auto out = std::back_inserter(body);
    if (want("server"))
        fmt::format_to(out, "# Server\r\nredis_version:7.0.0\r\ndhtkit_node_id:{}\r\nredis_mode:cluster\r\nos:Linux\r\n"
                            "tcp_port:{}\r\nuptime_in_seconds:{}\r\n\r\n",
                       facts.self, facts.resp_port, figure("uptime_s"));
    if (want("clients")) fmt::format_to(out, "# Clients\r\nconnected_clients:{}\r\n\r\n", figure("connections_open"));
    if (want("stats")) {
        fmt::format_to(out, "# Stats\r\ntotal_connections_received:{}\r\n", figure("connections_total"));
        for (const auto& [name, v] : facts.stats.all())
            if (auto shown = figures::text(v); shown.find_first_of(" \r\n") == std::string::npos)
                fmt::format_to(out, "dhtkit_{}:{}\r\n", name, shown);
        body += "\r\n";
    }
    if (want("replication"))
        fmt::format_to(out, "# Replication\r\nrole:master\r\nconnected_slaves:0\r\ndhtkit_backups:{}\r\n\r\n",
                       figure("backups"));
    if (want("cluster")) body += "# Cluster\r\ncluster_enabled:1\r\n\r\n";
    if (want("keyspace")) {
        const auto keys = facts.key_count();
        body += "# Keyspace\r\n";
        if (keys) fmt::format_to(out, "db0:keys={},expires=0,avg_ttl=0\r\n", keys);
    }
    protocol::resp::bulk(o, body);
}

// CONFIG GET pattern...: the few settings client tools ask for (a pattern is a name or "*").
inline void config(std::string& o, const args_t& args, std::string_view appendonly) {
    const auto sub = resp_commands::upper(args[1]);
    if (sub != "GET" || args.size() < 3) return subcommand_error(o, "config", args[1], sub == "GET");
    const std::pair<std::string_view, std::string_view> known[] = {
        {"save", ""}, {"appendonly", appendonly}, {"maxmemory", "0"}, {"databases", "1"}, {"cluster-enabled", "yes"},
    };
    std::vector<std::pair<std::string_view, std::string_view>> found;
    for (std::size_t i = 2; i < args.size(); ++i) {
        const auto wanted = resp_commands::lower(args[i]);
        for (const auto& kv : known)
            if (wanted == "*" || wanted == kv.first) found.push_back(kv);
    }
    protocol::resp::array(o, found.size() * 2);
    for (const auto& [k, v] : found) {
        protocol::resp::bulk(o, k);
        protocol::resp::bulk(o, v);
    }
}

}  // namespace dhtkit::resp_admin
