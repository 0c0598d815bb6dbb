// dhtkit-peer: runs one peer of the cluster described by a config file, as two processes (a
// supervisor that restarts the worker when it dies, and the worker), in the foreground or as a
// daemon.

#include <dhtkit/app/commands.hpp>
#include <dhtkit/app/config.hpp>
#include <dhtkit/app/console.hpp>
#include <dhtkit/app/daemon.hpp>
#include <dhtkit/app/policy_registry.hpp>
#include <dhtkit/app/supervisor.hpp>
#include <dhtkit/peer/peer.hpp>

#include <signal.h>
#include <unistd.h>

#include <iostream>
#include <type_traits>

#include <spdlog/sinks/rotating_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "flags.hpp"
#include "line_editor.hpp"

namespace {

constexpr const char* about =
    "dhtkit-peer: runs peer N of the cluster in FILE: an index server for the keys and file names\n"
    "that hash to it, a file server for its shared folder, and a client of the whole cluster; as two\n"
    "processes (a supervisor that restarts the worker when it dies, and the worker).\n"
    "\n"
    "Without --no-client the peer reads commands from stdin: with a prompt, line editing and history\n"
    "when stdin is a terminal (Ctrl-C cancels the command in progress; quit or Ctrl-D stops the\n"
    "peer), line by line without one otherwise (one result per command; errors on stderr, starting\n"
    "with 'error:'). Type 'help' for the commands.";

// The worker's exit status when it cannot start (bad config, address in use): not restarted.
constexpr int cannot_start = 3;

spdlog::level::level_enum spdlog_level(dhtkit::log_level l) {
    switch (l) {
        case dhtkit::log_level::debug: return spdlog::level::debug;
        case dhtkit::log_level::info: return spdlog::level::info;
        case dhtkit::log_level::warning: return spdlog::level::warn;
        case dhtkit::log_level::error: return spdlog::level::err;
    }
    return spdlog::level::info;
}

struct run_context {
    const dhtkit::cluster_settings& cluster;
    std::uint64_t id;
    bool serve_only;
    int signal_fd;
    dhtkit::readiness& ready;
    std::shared_ptr<spdlog::logger> log;
    pid_t main_pid;  // the supervisor's, or the lone worker's: what --stop signals
};

// The config chooses the replication policy ([replication] policy); the program fixes the two
// it offers, each a peer type of its own.
template <dhtkit::replication_policy Replication>
int run(const run_context& ctx_in) {
    using peer_type = dhtkit::peer<dhtkit::net::epoll_reactor, dhtkit::thread_pool,
                                   dhtkit::locked_table<std::string, std::string>, Replication>;
    std::optional<peer_type> peer;
    try {
        peer.emplace(ctx_in.cluster, ctx_in.id);
        // The library's lines keep their levels, under its own name.
        peer->on_log([log = ctx_in.log](dhtkit::log_level l, std::string_view line) {
            log->log(spdlog_level(l), "dhtkit: {}", line);
        });
        // Asked to leave (`dhtkit-cli --peer N leave`): once the slots are handed over, stop as
        // SIGTERM stops it (the supervisor sees a clean exit and restarts nothing).
        peer->on_left([log = ctx_in.log](const dhtkit::reply& r) {
            log->info("{}", r.ok() ? r.value : r.error);
            ::kill(::getpid(), SIGTERM);
        });
        auto restarts = dhtkit::restarts_from_environment();
        peer->stats().set_restarts(restarts.restarts, restarts.last_restart);
        peer->start();
    } catch (const std::exception& e) {
        ctx_in.log->error("cannot start: {}", e.what());
        ctx_in.ready.tell(fmt::format("error: dhtkit-peer {}: {}", ctx_in.id, e.what()));
        return cannot_start;
    }
    ctx_in.log->info("serving on {}, shared folder {}", peer->local().to_string(), peer->self().shared_dir.string());
    ctx_in.ready.tell(fmt::format("ok dhtkit-peer {}: serving on {} (pid {})", ctx_in.id, peer->local().to_string(),
                                  ctx_in.main_pid));

    dhtkit::command_context ctx{peer->cluster_client(), ctx_in.id,
                                [&](std::string_view n) { return peer->announce(n); },
                                [&](std::string_view n) { return peer->withdraw(n); },
                                peer->self().shared_dir, ::isatty(1) != 0};
    ctx.leave_here = [&] { return peer->leave(); };
    std::unique_ptr<dhtkit::line_input> input;
    if (!ctx_in.serve_only) {
        if (::isatty(0)) {
            std::fputs("type 'help' for the commands\n", stdout);
            input = std::make_unique<examples::line_editor>(fmt::format("dhtkit[{}]> ", ctx_in.id));
        } else {
            input = std::make_unique<dhtkit::line_input>();
        }
    }
    dhtkit::run_console(ctx_in.signal_fd, input.get(),
                        [&](const std::string& line, std::stop_token stop, std::ostream& out, std::ostream& err) {
                            auto mine = ctx;
                            mine.stop = stop;
                            return dhtkit::run_command(line, mine, out, err) != dhtkit::command_status::quit;
                        });
    if (ctx_in.cluster.live_membership && ctx_in.cluster.leave_on_stop) {
        ctx_in.log->info("leaving before stopping ([membership] leave_on_stop)");
        auto r = peer->leave();
        ctx_in.log->info("{}", r.ok() ? r.value : r.error);
    }
    ctx_in.log->info("stopping: answering what is in flight, then closing the connections");
    peer->stop();
    ctx_in.log->info("stopped");
    return 0;
}

// Lines from `at_least` up, each with its level: "dhtkit-peer N: warning: ..." on stderr, or
// with the time and pid in the daemon's file.
std::shared_ptr<spdlog::logger> make_logger(std::uint64_t id, const std::optional<std::filesystem::path>& file,
                                            dhtkit::log_level at_least) {
    std::shared_ptr<spdlog::logger> log;
    if (file) {
        log = spdlog::rotating_logger_mt(fmt::format("peer{}", id), file->string(), 5u << 20, 3);
        log->set_pattern("%Y-%m-%dT%H:%M:%S.%e [pid %P] %^%l%$: %v");
        log->flush_on(spdlog::level::info);
    } else {
        log = spdlog::stderr_logger_mt(fmt::format("peer{}", id));
        log->set_pattern(fmt::format("dhtkit-peer {}: %^%l%$: %v", id));
    }
    log->set_level(spdlog_level(at_least));
    return log;
}

}  // namespace

int main(int argc, char** argv) try {
    auto signals = dhtkit::block_stop_signals();
    ::signal(SIGPIPE, SIG_IGN);
    CLI::App app(about, "dhtkit-peer");
    std::string config;
    std::uint64_t id = 0;
    bool serve_only = false, alone = false, daemon = false, stop = false;
    std::optional<std::string> pid_flag, log_flag;
    app.add_option("--config", config, "the cluster's TOML file (peers, folders, pool size, limits)")->required();
    auto* id_flag = app.add_option("--id", id, "which peer of the file this process is")->check(examples::peer_id);
    std::string listen, dir, join;
    auto* join_flag = app.add_option("--join", join,
                                     "with [replication] policy = \"dynamic\": join the running cluster through the "
                                     "member at HOST:PORT, as a peer that is not in the file (with --listen and --dir)");
    app.add_option("--listen", listen, "with --join: this peer's HOST:PORT")->needs(join_flag);
    app.add_option("--dir", dir, "with --join: this peer's folder (its shared and data folders go inside)")->needs(join_flag);
    id_flag->excludes(join_flag);
    app.add_flag("--no-client", serve_only, "serve only, with no command reading, until SIGTERM or SIGINT");
    app.add_flag("--no-supervisor", alone, "run the worker alone, with no monitor process restarting it");
    app.add_flag("--daemon", daemon,
                 "detach (implies --no-client); returns 0 once the peer accepts connections, 1 with the reason "
                 "otherwise. Logs go to --log-file");
    app.add_option("--pid-file", pid_flag, "the daemon's pid file (default: dhtkit-peer-N.pid in the peer's data folder)");
    app.add_option("--log-file", log_flag,
                   "the daemon's log, rotated at 5 MiB, 3 kept (default: dhtkit-peer-N.log in the data folder)");
    app.add_flag("--stop", stop, "stop the daemon of this pid file (SIGTERM) and wait for it to exit");
    std::string log_level = "info";
    app.add_option("--log-level", log_level, "the least a line must be to be logged: debug, info, warning or error")
        ->check(CLI::IsMember({"debug", "info", "warning", "error"}))
        ->capture_default_str();
    bool repair = false;
    app.add_flag("--repair", repair,
                 "with [storage] mode = \"log\": start from a damaged log, keeping every record before the damage "
                 "and moving the rest aside (never deleting it)");
    if (auto status = examples::parse_flags(app, argc, argv)) return *status;

    auto cluster = dhtkit::load_config(config);
    cluster.storage.repair = repair;
    if (!join.empty()) {
        if (listen.empty() || dir.empty()) throw std::runtime_error("--join needs --listen HOST:PORT and --dir DIR");
        id = dhtkit::add_joining_peer(cluster, join, listen, dir);
    } else if (id_flag->count() == 0) {
        throw std::runtime_error("--id N (a peer of the file) or --join HOST:PORT is required");
    }
    const auto& self = cluster.peer(id);
    // Every path is absolute before a daemon detaches, whatever its working directory.
    auto pid_path = std::filesystem::absolute(pid_flag ? std::filesystem::path(*pid_flag)
                                                        : self.data_dir / fmt::format("dhtkit-peer-{}.pid", id));
    if (stop) {
        std::puts(dhtkit::stop_daemon(pid_path, std::chrono::seconds(30)).c_str());
        return 0;
    }

    std::filesystem::create_directories(self.data_dir);
    std::optional<dhtkit::pid_file> pid;
    if (daemon || pid_flag) pid.emplace(pid_path);
    std::optional<std::filesystem::path> log_path;
    dhtkit::readiness ready;
    if (daemon) {
        log_path = std::filesystem::absolute(log_flag ? std::filesystem::path(*log_flag)
                                                      : self.data_dir / fmt::format("dhtkit-peer-{}.log", id));
        serve_only = true;
        ready = dhtkit::detach(std::chrono::seconds(60), [](const std::string& line) {
            std::fprintf(stderr, "%s\n", line.c_str());
        });
    }
    if (pid) pid->write_self();
    auto log = make_logger(id, log_path, *dhtkit::log_level_named(log_level));

    run_context ctx{cluster, id, serve_only, signals.get(), ready, log, ::getpid()};
    auto worker = [&] {
        return dhtkit::offered_policies::with(cluster.policy, [&]<class P>(std::type_identity<P>) { return run<P>(ctx); });
    };
    if (alone) return worker();

    dhtkit::supervisor_options opt;
    opt.max_restarts = cluster.max_restarts;
    opt.window = std::chrono::seconds(cluster.restart_window_s);
    opt.fatal_status = cannot_start;
    opt.forward_interrupt = serve_only || !::isatty(0);
    std::string last;
    dhtkit::supervisor monitor(opt, [&](const std::string& line) {
        last = line;
        log->warn("supervisor: {}", line);
    });
    log->info("supervisor pid {}: starting the worker", ::getpid());
    int rc = monitor.run(worker, signals.get());
    if (rc != 0) ready.tell(fmt::format("error: dhtkit-peer {}: {}", id, last));
    return rc;
} catch (const dhtkit::daemon_error& e) {  // nothing to stop, or already running
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
} catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
}
