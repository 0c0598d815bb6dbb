// dhtkit-cli: runs one command (or stdin's commands) against a cluster and exits.

#include <dhtkit/app/commands.hpp>
#include <dhtkit/app/config.hpp>
#include <dhtkit/app/console.hpp>

#include <unistd.h>

#include <cstdlib>
#include <iostream>

#include "flags.hpp"

namespace {

constexpr const char* usage =
    "usage: dhtkit-cli --config FILE [--peer N] [--timeout MS] [COMMAND ARGS...]\n"
    "\n"
    "Runs COMMAND against the cluster in FILE and exits: 0 on success, 1 when the key or name is\n"
    "not found, 2 on any error. Without COMMAND, reads commands from stdin, one per line.\n"
    "\n"
    "  --config FILE   the cluster's TOML file\n"
    "  --peer N        send the command to peer N itself: its ping and stats, and register /\n"
    "                  unregister of a file in N's own shared folder\n"
    "  --timeout MS    how long to wait for a peer's answer before trying the next holder\n"
    "                  of the key (default 800)\n"
    "  --help          this text and the commands\n"
    "\n"
    "The client password, when the cluster has one, comes from DHTKIT_PASSWORD, else from the\n"
    "file's [security] client_password_file.\n";

}  // namespace

int main(int argc, char** argv) try {
    auto signals = dhtkit::block_stop_signals();
    examples::flags f(argc, argv);
    if (f.take_switch("--help")) {
        std::fputs(usage, stdout);
        std::fputs(std::string(dhtkit::command_help).c_str(), stdout);
        return 0;
    }
    auto config = f.take("--config");
    auto peer = f.take_number<std::uint64_t>("--peer");
    auto timeout = f.take_number<long>("--timeout");
    auto words = f.rest(true);
    if (!config) throw std::invalid_argument("--config is required (see --help)");

    auto cluster = dhtkit::load_config(*config);
    // The client password: the environment's, else the cluster file's.
    if (const char* password = std::getenv("DHTKIT_PASSWORD"); password && *password) cluster.client_password = password;
    if (peer) (void)cluster.peer(*peer);
    dhtkit::client_options options;
    if (timeout) options.request_timeout = std::chrono::milliseconds(*timeout);
    dhtkit::client client(cluster, options);
    dhtkit::command_context ctx{client, peer, {}, {}, ".", ::isatty(1) != 0};

    if (!words.empty()) {
        std::string line;
        for (const auto& w : words) line += (line.empty() ? "" : " ") + w;
        auto status = dhtkit::run_command(line, ctx, std::cout, std::cerr);
        return status == dhtkit::command_status::quit ? 0 : static_cast<int>(status);
    }
    int worst = 0;
    dhtkit::run_console(signals.get(), true, "dhtkit> ", [&](std::string_view line) {
        auto status = dhtkit::run_command(line, ctx, std::cout, std::cerr);
        std::cout.flush();
        if (status == dhtkit::command_status::quit) return false;
        worst = std::max(worst, static_cast<int>(status));
        return true;
    });
    return worst;
} catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
}
