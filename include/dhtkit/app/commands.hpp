#pragma once
// The command language shared by the peer's prompt and dhtkit-cli: split a line into words as a
// shell does (or take dhtkit-cli's arguments as they are), run it against the cluster, print the
// result. Results go to `out`, one per command; errors go to `err` and
// start with "error:". The status follows dhtkit-cli's exit codes: 0 done, 1 not found, 2 error.

#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>
#include <optional>
#include <sstream>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <fmt/ostream.h>

#include "dhtkit/peer/client.hpp"

namespace dhtkit {

enum class command_status { done = 0, not_found = 1, error = 2, quit = 3 };

inline constexpr std::string_view command_help =
    "commands (one word per argument: quote a key, value or name that holds spaces, as in a shell):\n"
    "  put KEY VALUE [--ttl SECONDS]\n"
    "                       store VALUE under KEY on KEY's home peer (gone after SECONDS)\n"
    "  get KEY              print KEY's value\n"
    "  ttl KEY              the seconds KEY has left ('none': it does not expire)\n"
    "  del KEY              delete KEY\n"
    "  where KEY            KEY's slot, and the peers that hold it (home first)\n"
    "  register NAME        register file NAME from the peer's shared folder\n"
    "  unregister NAME      withdraw the peer's copy of NAME from the registry\n"
    "  search NAME          list the peers that hold NAME\n"
    "  obtain NAME [DEST] [--force]\n"
    "                       download NAME from a holder, verified, to DEST (Ctrl-C cancels); a\n"
    "                       read-only DEST is replaced only with --force\n"
    "  peers                the cluster, and which peers answer\n"
    "  leave                (dynamic policy) hand this peer's slots over, then stop it (dhtkit-cli: --peer N)\n"
    "  stats [ID]           a peer's counters (every peer without ID)\n"
    "  ping [ID]            ask a peer (every peer without ID) whether it is up\n"
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
    // The peer that ping and stats without an ID ask (dhtkit-cli --peer N); every peer when unset.
    std::optional<node_id> chosen_peer = {};
    // Requested when the user cancels the command in progress (Ctrl-C at the prompt).
    std::stop_token stop = {};
    // Leaves the cluster from this process (the peer's prompt); when empty, `leave` asks the
    // acting peer over the network.
    std::function<reply()> leave_here = {};
};

// A command line split into words as a shell splits them: blanks separate words; inside '...'
// every character stands for itself; inside "..." a backslash escapes '"' and '\\'; outside
// quotes a backslash escapes the next character. `error` says what is wrong with the line.
struct parsed_line {
    std::vector<std::string> words;
    std::string error;
};

inline parsed_line parse_line(std::string_view line) {
    parsed_line p;
    std::string word;
    bool in_word = false;
    for (std::size_t i = 0; i < line.size(); ++i) {
        const char c = line[i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            if (in_word) p.words.push_back(std::move(word));
            word.clear();
            in_word = false;
        } else if (c == '\'') {
            const auto close = line.find('\'', i + 1);
            if (close == std::string_view::npos) return {{}, "unterminated ' quote"};
            word.append(line.substr(i + 1, close - i - 1));
            i = close;
            in_word = true;
        } else if (c == '"') {
            std::size_t j = i + 1;
            for (; j < line.size() && line[j] != '"'; ++j) {
                if (line[j] == '\\' && j + 1 < line.size() && (line[j + 1] == '"' || line[j + 1] == '\\')) ++j;
                word += line[j];
            }
            if (j >= line.size()) return {{}, "unterminated \" quote"};
            i = j;
            in_word = true;
        } else if (c == '\\') {
            if (i + 1 == line.size()) return {{}, "a backslash at the end of the line"};
            word += line[++i];
            in_word = true;
        } else {
            word += c;
            in_word = true;
        }
    }
    if (in_word) p.words.push_back(std::move(word));
    return p;
}

namespace detail {

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

inline command_status run_command(const std::vector<std::string>& words, command_context& ctx, std::ostream& out,
                                  std::ostream& err) {
    if (words.empty() || words[0].starts_with('#')) return command_status::done;
    const std::string_view cmd = words[0];
    const std::size_t args = words.size() - 1;
    const std::string_view arg = args > 0 ? std::string_view(words[1]) : std::string_view{};
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
    // A live cluster's map changes (members join): commands that name or list peers take the
    // newest map a member has first.
    auto follow_map = [&] {
        for (int i = 0; i < 3 && ctx.cluster.map().live() && ctx.cluster.learn_map_from_anyone(); ++i) {
        }
    };
    auto each_peer = [&](std::string_view which, auto&& f) {
        std::vector<node_id> targets;
        if (!which.empty()) {
            auto i = peer_arg(which);
            if (!i && ctx.cluster.map().live()) {
                follow_map();
                i = peer_arg(which);
            }
            if (!i) {
                fmt::print(err, "error: '{}' is not a peer id of this cluster\n", which);
                return command_status::error;
            }
            targets.push_back(*i);
        } else if (ctx.chosen_peer) {
            targets.push_back(*ctx.chosen_peer);
        } else {
            follow_map();
            for (const auto& n : ctx.cluster.map().nodes())
                if (placed(n.state)) targets.push_back(n.id);
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
        const auto usage = "put KEY VALUE [--ttl SECONDS] (quote a key or value with spaces: put 'my key' 'my value')";
        if (args != 2 && !(args == 4 && words[3] == "--ttl")) return need(usage);
        reply r;
        if (args == 4) {
            double seconds = 0;
            auto [p, ec] = std::from_chars(words[4].data(), words[4].data() + words[4].size(), seconds);
            if (ec != std::errc{} || p != words[4].data() + words[4].size() || !(seconds > 0) || seconds > 1e9) {
                fmt::print(err, "error: --ttl takes a positive number of seconds, not '{}'\n", words[4]);
                return command_status::error;
            }
            r = ctx.cluster.put(arg, words[2], std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000 + 0.5)));
        } else {
            r = ctx.cluster.put(arg, words[2]);
        }
        if (r.ok()) out << "ok\n";
        return detail::report(r, err, fmt::format("key '{}'", arg));
    }
    if (cmd == "ttl") {
        if (args != 1) return need("ttl KEY");
        auto r = ctx.cluster.ttl(arg);
        if (r.ok()) out << (r.value == "none" ? r.value : fmt::format("{:.3f}", std::stod(r.value) / 1000)) << '\n';
        return detail::report(r, err, fmt::format("key '{}'", arg));
    }
    if (cmd == "get" || cmd == "del") {
        if (args != 1) return need(fmt::format("{} KEY", cmd));
        auto r = cmd == "get" ? ctx.cluster.get(arg) : ctx.cluster.del(arg);
        if (r.ok()) out << (cmd == "get" ? r.value : std::string("ok")) << '\n';
        return detail::report(r, err, fmt::format("key '{}'", arg));
    }
    if (cmd == "where") {
        if (args != 1) return need("where KEY");
        follow_map();
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
        if (args != 1) return need(fmt::format("{} NAME", cmd));
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
    if (cmd == "leave") {
        if (args != 0) return need("leave");
        if (ctx.leave_here) {
            auto r = ctx.leave_here();
            if (r.ok()) fmt::print(out, "{}\n", r.value);
            else fmt::print(err, "error: {}\n", r.error);
            return r.ok() ? command_status::quit : command_status::error;
        }
        if (!ctx.acting_peer) {
            fmt::print(err, "error: leave needs --peer N: the peer that leaves\n");
            return command_status::error;
        }
        auto r = ctx.cluster.call(*ctx.acting_peer, protocol::opcode::leave, {});
        if (r.ok()) fmt::print(out, "{}\n", r.value);
        return r.ok() ? command_status::done : detail::report(r, err, fmt::format("peer {}", *ctx.acting_peer));
    }
    if (cmd == "search") {
        if (args != 1) return need("search NAME");
        auto [r, holders] = ctx.cluster.search(arg);
        for (const auto& h : holders)
            fmt::print(out, "peer {} {}:{} size={} checksum={:016x}\n", h.peer_id, h.host, h.port, h.size, h.checksum);
        return detail::report(r, err, fmt::format("file '{}'", arg));
    }
    if (cmd == "obtain") {
        const bool force = args >= 2 && words.back() == "--force";
        const auto given = args - (force ? 1 : 0);
        if (given != 1 && given != 2) return need("obtain NAME [DEST] [--force]");
        std::filesystem::path dest = given == 1 ? ctx.download_folder / std::string(arg) : std::filesystem::path(words[2]);
        if (given == 2 && !words[2].empty() && std::filesystem::is_directory(dest)) dest /= std::string(arg);
        download_progress bar;
        if (ctx.progress_bar)
            bar = [stop = ctx.stop](std::uint64_t done, std::uint64_t total) {
                if (!stop.stop_requested()) detail::draw_progress(done, total);
            };
        auto result = ctx.cluster.obtain(arg, dest, bar, ctx.stop, force);
        if (result.ok()) {
            fmt::print(out, "obtained {} ({} bytes, checksum {:016x}) from peer {} -> {}\n", arg, result.size,
                       result.checksum, result.from_peer, dest.string());
            return command_status::done;
        }
        return detail::report({result.code, {}, result.error}, err, fmt::format("file '{}'", arg));
    }
    if (cmd == "peers") {
        follow_map();
        const auto& m = ctx.cluster.map();
        for (const auto& n : m.nodes()) {
            // A live cluster's view says more than a ping: whether the members take it for alive.
            const bool in_placement = placed(n.state);
            auto r = in_placement ? ctx.cluster.call(n.id, protocol::opcode::ping, {}) : reply{};
            fmt::print(out, "peer {} {}:{} {}{}\n", n.id, n.host, n.port, in_placement ? (r.ok() ? "up" : "down") : "-",
                       m.live() ? fmt::format(" ({} in the view of epoch {})", to_string(n.state), m.epoch()) : "");
        }
        return command_status::done;
    }
    if (cmd == "ping" || cmd == "stats") {
        if (args > 1) return need(fmt::format("{} [ID]", cmd));
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

// A line of the prompt or of dhtkit-cli's input, split as a shell would.
inline command_status run_command(std::string_view line, command_context& ctx, std::ostream& out, std::ostream& err) {
    auto parsed = parse_line(line);
    if (!parsed.error.empty()) {
        fmt::print(err, "error: {}\n", parsed.error);
        return command_status::error;
    }
    return run_command(parsed.words, ctx, out, err);
}

}  // namespace dhtkit
