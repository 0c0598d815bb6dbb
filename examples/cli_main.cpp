// dhtkit-cli: runs one command (or stdin's commands) against a cluster and exits.

#include <dhtkit/app/commands.hpp>
#include <dhtkit/app/config.hpp>
#include <dhtkit/app/console.hpp>

#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "flags.hpp"
#include "line_editor.hpp"

namespace {

constexpr const char* about =
    "usage: dhtkit-cli --config FILE [--peer N] [--timeout MS] [COMMAND ARGS...]\n"
    "\n"
    "dhtkit-cli: runs COMMAND against the cluster in FILE and exits: 0 on success, 1 when the key or\n"
    "name is not found, 2 on any error. Each argument is one word of the command: quote a key or\n"
    "value that holds spaces as the shell wants it. Without COMMAND, reads commands from stdin, one per\n"
    "line, split as a shell would (with line editing and history at a terminal).\n"
    "\n"
    "The client password, when the cluster has one, comes from DHTKIT_PASSWORD, else from the file's\n"
    "[security] client_password_file.";

}  // namespace

int main(int argc, char** argv) try {
    auto signals = dhtkit::block_stop_signals();
    CLI::App app(about, "dhtkit-cli");
    std::string config;
    std::optional<std::uint64_t> peer;
    long timeout_ms = 800;
    app.add_option("--config", config, "the cluster's TOML file")->required();
    app.add_option("--peer", peer,
                   "send the command to peer N itself: its ping and stats, and register / unregister of a file in "
                   "N's own shared folder")
        ->check(examples::peer_id);
    app.add_option("--timeout", timeout_ms, "how long to wait for a peer's answer before trying the next holder (ms)")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.footer(std::string(dhtkit::command_help));
    app.prefix_command();  // COMMAND and what follows are words, even those that start with '-'
    if (auto status = examples::parse_flags(app, argc, argv)) return *status;
    const std::vector<std::string> words = app.remaining();

    auto cluster = dhtkit::load_config(config);
    // The client password: the environment's, else the cluster file's.
    if (const char* password = std::getenv("DHTKIT_PASSWORD"); password && *password) cluster.client_password = password;
    // A peer of the file (a live cluster's may have joined later: the map will say).
    if (peer && !cluster.live_membership) (void)cluster.peer(*peer);
    dhtkit::client_options options;
    options.request_timeout = std::chrono::milliseconds(timeout_ms);
    dhtkit::client client(cluster, options);
    dhtkit::command_context ctx{client, peer, {}, {}, ".", ::isatty(1) != 0, peer};

    if (!words.empty()) {
        auto status = dhtkit::run_command(words, ctx, std::cout, std::cerr);
        return status == dhtkit::command_status::quit ? 0 : static_cast<int>(status);
    }
    int worst = 0;
    std::unique_ptr<dhtkit::line_input> input;
    if (::isatty(0)) input = std::make_unique<examples::line_editor>("dhtkit> ");
    else input = std::make_unique<dhtkit::line_input>();
    dhtkit::run_console(signals.get(), input.get(),
                        [&](const std::string& line, std::stop_token stop, std::ostream& out, std::ostream& err) {
                            auto mine = ctx;
                            mine.stop = stop;
                            auto status = dhtkit::run_command(line, mine, out, err);
                            if (status == dhtkit::command_status::quit) return false;
                            if (!stop.stop_requested()) worst = std::max(worst, static_cast<int>(status));
                            return true;
                        });
    return worst;
} catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
}
