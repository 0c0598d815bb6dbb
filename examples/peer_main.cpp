// dhtkit-peer: runs one peer of the cluster described by a config file.

#include <dhtkit/app/commands.hpp>
#include <dhtkit/app/config.hpp>
#include <dhtkit/app/console.hpp>
#include <dhtkit/peer/peer.hpp>

#include <unistd.h>

#include <iostream>

#include "flags.hpp"

namespace {

constexpr const char* usage =
    "usage: dhtkit-peer --config FILE --id N [--no-client]\n"
    "\n"
    "Runs peer N of the cluster in FILE: an index server for the keys and file names that hash to\n"
    "it, a file server for its shared folder, and a client of the whole cluster.\n"
    "\n"
    "  --config FILE   the cluster's TOML file (peers, folders, pool size, limits)\n"
    "  --id N          which peer of the file this process is\n"
    "  --no-client     serve only, with no command reading, until SIGTERM or SIGINT\n"
    "  --help          this text\n"
    "\n"
    "Without --no-client the peer reads commands from stdin: with a prompt when stdin is a\n"
    "terminal, line by line without one otherwise (one result per command; errors on stderr,\n"
    "starting with 'error:'). Type 'help' for the commands.\n";

// The dispatch model is a compile-time policy; the config picks which instantiation runs.
template <template <class, class> class Dispatch>
int run(const dhtkit::cluster_config& cluster, unsigned id, bool serve_only, int signal_fd) {
    dhtkit::peer<dhtkit::net::epoll_reactor, dhtkit::thread_pool, dhtkit::locked_table<std::string, std::string>,
                 dhtkit::modulo_placement, dhtkit::static_backup, Dispatch>
        peer(cluster, id);
    peer.start();
    std::fprintf(stderr, "dhtkit-peer %u: serving on %s, shared folder %s\n", id, peer.local().to_string().c_str(),
                 peer.self().shared_dir.c_str());

    dhtkit::command_context ctx{peer.cluster_client(), id,
                                [&](std::string_view n) { return peer.announce(n); },
                                [&](std::string_view n) { return peer.withdraw(n); },
                                peer.self().shared_dir, ::isatty(1) != 0};
    if (!serve_only && ::isatty(0)) std::fputs("type 'help' for the commands\n", stdout);
    auto prompt = fmt::format("dhtkit[{}]> ", id);
    dhtkit::run_console(signal_fd, !serve_only, prompt, [&](std::string_view line) {
        auto status = dhtkit::run_command(line, ctx, std::cout, std::cerr);
        std::cout.flush();
        return status != dhtkit::command_status::quit;
    });
    peer.stop();
    return 0;
}

}  // namespace

int main(int argc, char** argv) try {
    auto signals = dhtkit::block_stop_signals();
    examples::flags f(argc, argv);
    if (f.take_switch("--help")) {
        std::fputs(usage, stdout);
        return 0;
    }
    auto config = f.take("--config");
    auto id = f.take_number<unsigned>("--id");
    bool serve_only = f.take_switch("--no-client");
    f.rest(false);
    if (!config || !id) throw std::invalid_argument("--config and --id are required (see --help)");

    auto cluster = dhtkit::load_config(*config);
    if (cluster.dispatch == "pool") return run<dhtkit::pool_dispatch>(cluster, *id, serve_only, signals.get());
    return run<dhtkit::loop_dispatch>(cluster, *id, serve_only, signals.get());
} catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
}
