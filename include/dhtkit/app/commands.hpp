#pragma once
// The command language shared by the peer's prompt and dhtkit-cli: parse a line, run it against
// the cluster, print the result. Results go to `out`, one per command; errors go to `err` and
// start with "error:". The status follows dhtkit-cli's exit codes: 0 done, 1 not found, 2 error.

#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <fmt/ostream.h>

#include "dhtkit/peer/client.hpp"

namespace dhtkit {

enum class command_status { done = 0, not_found = 1, error = 2, quit = 3 };

inline constexpr std::string_view command_help =
    "commands:\n"
    "  put KEY VALUE        store VALUE (the rest of the line) under KEY on KEY's home peer\n"
    "  get KEY              print KEY's value\n"
    "  del KEY              delete KEY\n"
    "  where KEY            KEY's slot, and the peers that hold it (home first)\n"
    "  register NAME        register file NAME from the peer's shared folder\n"
    "  unregister NAME      withdraw the peer's copy of NAME from the registry\n"
    "  search NAME          list the peers that hold NAME\n"
    "  obtain NAME [DEST]   download NAME from a holder, verified, to DEST\n"
    "  peers                the cluster, and which peers answer\n"
    "  stats [ID]           a peer's counters (all peers without ID)\n"
    "  ping [ID]            ask a peer (all peers without ID) whether it is up\n"
    "  help                 this text\n"
    "  quit                 leave\n";

// Who carries out register/unregister and answers ping/stats by default.
struct command_context {
    client& cluster;
    // The peer whose shared folder `register` means; std::nullopt when there is none (dhtkit-cli
    // without --peer).
    std::optional<node_id> acting_peer;
    // Runs register/unregister in this process (the peer's prompt); when empty, the acting peer
    // is asked over the network.
    std::function<reply(std::string_view)> announce_here;
    std::function<reply(std::string_view)> withdraw_here;
    std::filesystem::path download_folder = ".";
    bool progress_bar = false;
};

namespace detail {

inline std::vector<std::string_view> split_words(std::string_view line, std::size_t max_words,
                                                 std::string_view* rest) {
    std::vector<std::string_view> words;
    std::size_t at = 0;
    auto skip_space = [&] {
        while (at < line.size() && (line[at] == ' ' || line[at] == '\t')) ++at;
    };
    skip_space();
    while (at < line.size() && words.size() < max_words) {
        auto end = line.find_first_of(" \t", at);
        if (end == std::string_view::npos) end = line.size();
        words.push_back(line.substr(at, end - at));
        at = end;
        skip_space();
    }
    if (rest) *rest = line.substr(at);
    return words;
}

inline command_status report(const reply& r, std::ostream& err, std::string_view what) {
    if (r.ok()) return command_status::done;
    if (r.code == protocol::status::not_found) {
        fmt::print(err, "error: {} not found\n", what);
        return command_status::not_found;
    }
    fmt::print(err, "error: {}\n", r.error.empty() ? std::string(to_string(r.code)) : r.error);
    return command_status::error;
}

inline void draw_progress(std::uint64_t done, std::uint64_t total) {
    const int width = 40;
    int filled = total ? static_cast<int>(static_cast<double>(done) / static_cast<double>(total) * width) : width;
    std::fprintf(stderr, "\r[%s%s] %3d%% %llu/%llu bytes", std::string(static_cast<std::size_t>(filled), '#').c_str(),
                 std::string(static_cast<std::size_t>(width - filled), ' ').c_str(),
                 total ? static_cast<int>(done * 100 / total) : 100, static_cast<unsigned long long>(done),
                 static_cast<unsigned long long>(total));
    if (done == total) std::fprintf(stderr, "\n");
}

}  // namespace detail

inline command_status run_command(std::string_view line, command_context& ctx, std::ostream& out, std::ostream& err) {
    std::string_view rest;
    auto words = detail::split_words(line, 2, &rest);
    if (words.empty() || words[0].starts_with('#')) return command_status::done;
    const std::string_view cmd = words[0];
    const std::string_view arg = words.size() > 1 ? words[1] : std::string_view{};
    auto need = [&](std::string_view usage) {
        fmt::print(err, "error: usage: {}\n", usage);
        return command_status::error;
    };
    auto peer_arg = [&](std::string_view text) -> std::optional<node_id> {
        node_id id = 0;
        auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
        if (ec != std::errc{} || p != text.data() + text.size() || !ctx.cluster.map().find(id)) return std::nullopt;
        return id;
    };
    auto each_peer = [&](std::string_view which, auto&& f) {
        std::vector<node_id> targets;
        if (!which.empty()) {
            auto i = peer_arg(which);
            if (!i) {
                fmt::print(err, "error: '{}' is not a peer id of this cluster\n", which);
                return command_status::error;
            }
            targets.push_back(*i);
        } else if (ctx.acting_peer) {
            targets.push_back(*ctx.acting_peer);
        } else {
            for (const auto& n : ctx.cluster.map().nodes()) targets.push_back(n.id);
        }
        auto status = command_status::done;
        for (auto i : targets)
            if (f(i) != command_status::done) status = command_status::error;
        return status;
    };

    if (cmd == "help") {
        out << command_help;
        return command_status::done;
    }
    if (cmd == "quit" || cmd == "exit") return command_status::quit;
    if (cmd == "put") {
        if (arg.empty()) return need("put KEY VALUE");
        auto r = ctx.cluster.put(arg, rest);
        if (r.ok()) out << "ok\n";
        return detail::report(r, err, fmt::format("key '{}'", arg));
    }
    if (cmd == "get" || cmd == "del") {
        if (arg.empty() || !rest.empty()) return need(fmt::format("{} KEY", cmd));
        auto r = cmd == "get" ? ctx.cluster.get(arg) : ctx.cluster.del(arg);
        if (r.ok()) out << (cmd == "get" ? r.value : std::string("ok")) << '\n';
        return detail::report(r, err, fmt::format("key '{}'", arg));
    }
    if (cmd == "where") {
        if (arg.empty() || !rest.empty()) return need("where KEY");
        // The slot, then its home and the backups in the order a client falls over to them.
        auto holders = ctx.cluster.holders(arg);
        fmt::print(out, "slot {}: ", key_slot(arg));
        if (holders.empty()) fmt::print(out, "no holder in the map (epoch {})", ctx.cluster.map().epoch());
        for (std::size_t i = 0; i < holders.size(); ++i)
            fmt::print(out, "{}peer {}", i == 0 ? "" : i == 1 ? " (backups: " : ", ", holders[i]);
        fmt::print(out, "{}\n", holders.size() > 1 ? ")" : "");
        return command_status::done;
    }
    if (cmd == "register" || cmd == "unregister") {
        if (arg.empty() || !rest.empty()) return need(fmt::format("{} NAME", cmd));
        reply r;
        bool reg = cmd == "register";
        if (reg && ctx.announce_here) r = ctx.announce_here(arg);
        else if (!reg && ctx.withdraw_here) r = ctx.withdraw_here(arg);
        else if (ctx.acting_peer)
            r = ctx.cluster.call(*ctx.acting_peer, reg ? protocol::opcode::announce : protocol::opcode::withdraw, arg);
        else {
            fmt::print(err, "error: {} needs --peer N: the peer whose shared folder holds the file\n", cmd);
            return command_status::error;
        }
        if (r.ok()) fmt::print(out, "{} {}\n", reg ? "registered" : "unregistered", arg);
        return detail::report(r, err, fmt::format("file '{}'", arg));
    }
    if (cmd == "search") {
        if (arg.empty() || !rest.empty()) return need("search NAME");
        auto [r, holders] = ctx.cluster.search(arg);
        for (const auto& h : holders)
            fmt::print(out, "peer {} {}:{} size={} checksum={:016x}\n", h.peer_id, h.host, h.port, h.size, h.checksum);
        return detail::report(r, err, fmt::format("file '{}'", arg));
    }
    if (cmd == "obtain") {
        auto more = detail::split_words(rest, 2, nullptr);
        if (arg.empty() || more.size() > 1) return need("obtain NAME [DEST]");
        std::filesystem::path dest = more.empty() ? ctx.download_folder / std::string(arg) : std::filesystem::path(more[0]);
        if (std::filesystem::is_directory(dest)) dest /= std::string(arg);
        auto result = ctx.cluster.obtain(arg, dest, ctx.progress_bar ? download_progress(detail::draw_progress) : download_progress{});
        if (result.ok()) {
            fmt::print(out, "obtained {} ({} bytes, checksum {:016x}) from peer {} -> {}\n", arg, result.size,
                       result.checksum, result.from_peer, dest.string());
            return command_status::done;
        }
        return detail::report({result.code, {}, result.error}, err, fmt::format("file '{}'", arg));
    }
    if (cmd == "peers") {
        for (const auto& n : ctx.cluster.map().nodes()) {
            auto r = ctx.cluster.call(n.id, protocol::opcode::ping, {});
            fmt::print(out, "peer {} {}:{} {}\n", n.id, n.host, n.port, r.ok() ? "up" : "down");
        }
        return command_status::done;
    }
    if (cmd == "ping" || cmd == "stats") {
        if (!rest.empty()) return need(fmt::format("{} [ID]", cmd));
        return each_peer(arg, [&](node_id id) {
            auto r = ctx.cluster.call(id, cmd == "ping" ? protocol::opcode::ping : protocol::opcode::stats, {});
            if (!r.ok()) return detail::report(r, err, fmt::format("peer {}", id));
            if (cmd == "ping") fmt::print(out, "peer {} is up\n", id);
            else fmt::print(out, "peer {}:\n{}", id, r.value);
            return command_status::done;
        });
    }
    fmt::print(err, "error: unknown command '{}' (try 'help')\n", cmd);
    return command_status::error;
}

}  // namespace dhtkit
