#pragma once
// A cluster of real dhtkit-peer processes on loopback, in a scratch folder, for the tests.
// Ports are taken free from the kernel; a peer counts as up once it has said so on stderr; every
// process started is stopped (SIGTERM, then SIGKILL) and reaped, and the folder removed.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <dhtkit/app/config.hpp>
#include <dhtkit/net/socket.hpp>
#include <dhtkit/net/unique_fd.hpp>
#include <dhtkit/peer/client.hpp>
#include <dhtkit/store/versioned.hpp>

#include "test_network.hpp"

namespace test {

// What a process writes to stderr, read as it comes by a thread of its own: a pipe that nobody
// reads fills up, and the process then blocks in its next log line.
class stderr_reader {
public:
    explicit stderr_reader(dhtkit::net::unique_fd pipe)
        : pipe_(std::move(pipe)), stop_(::eventfd(0, EFD_CLOEXEC)), thread_([this] { run(); }) {}
    stderr_reader(const stderr_reader&) = delete;
    stderr_reader& operator=(const stderr_reader&) = delete;
    ~stderr_reader() {
        const std::uint64_t one = 1;
        [[maybe_unused]] auto n = ::write(stop_.get(), &one, sizeof one);
        thread_.join();
    }

    // Waits until `holds(text so far)`, the pipe's end (every writer gone) or `until`; returns
    // whether it holds.
    template <class Holds>
    bool wait(Holds holds, std::chrono::steady_clock::time_point until) {
        std::unique_lock lock(mutex_);
        changed_.wait_until(lock, until, [&] { return ended_ || holds(std::as_const(text_)); });
        return holds(std::as_const(text_));
    }
    [[nodiscard]] bool ended() const {
        std::lock_guard lock(mutex_);
        return ended_;
    }
    // What came since the last take().
    std::string take() {
        std::lock_guard lock(mutex_);
        auto out = text_.substr(taken_);
        taken_ = text_.size();
        return out;
    }

private:
    void run() {
        char buf[4096];
        for (;;) {
            pollfd fds[2]{{pipe_.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
            if (::poll(fds, 2, -1) < 0) {
                if (errno == EINTR) continue;
                break;
            }
            if (fds[0].revents != 0) {  // first: what is still in the pipe is read before stopping
                const auto n = ::read(pipe_.get(), buf, sizeof buf);
                if (n < 0 && errno == EINTR) continue;
                if (n <= 0) break;
                std::lock_guard lock(mutex_);
                text_.append(buf, static_cast<std::size_t>(n));
                if (text_.size() > keep_bytes) {  // the newest part is what a failing test shows
                    const auto drop = text_.size() - keep_bytes / 2;
                    text_.erase(0, drop);
                    taken_ = taken_ > drop ? taken_ - drop : 0;
                }
                changed_.notify_all();
                continue;
            }
            if (fds[1].revents != 0) break;
        }
        std::lock_guard lock(mutex_);
        ended_ = true;
        changed_.notify_all();
    }

    static constexpr std::size_t keep_bytes = 8u << 20;
    dhtkit::net::unique_fd pipe_;
    dhtkit::net::unique_fd stop_;
    mutable std::mutex mutex_;
    std::condition_variable changed_;
    std::string text_;
    std::size_t taken_ = 0;
    bool ended_ = false;
    std::thread thread_;  // last: started once the rest is built
};

struct cluster_options {
    int peers = 3;
    int pool_threads = 2;
    std::size_t max_key_bytes = 1024;
    std::size_t max_value_bytes = 1 << 20;
    std::size_t max_output_bytes = 1 << 20;
    int idle_timeout_s = 30;
    std::string dispatch = "loop";
    int backups = 2;
    bool supervised = false;  // run each peer as supervisor + worker (the pid is the supervisor's)
    int max_restarts = 5;
    std::string consistency = "available";
    int min_copies = 1;  // [replication] min_copies
    int tombstone_purge_s = 86400;  // [replication] tombstone_purge_s
    // Each peer in a network namespace of its own, the test's threads in a hub (test_network.hpp),
    // so that a peer can be partitioned off. Root only.
    bool own_network = false;
    bool secret = false;  // a cluster secret file (mode 0600) in the cluster's folder
    std::string password = {};  // when not empty: a client password file holding it
    std::string storage = "memory";  // or "log"
    std::string fsync = "everysec";
    bool resp = false;  // each peer also listens for RESP (resp_port)
    std::string resp_route = "moved";  // or "forward"
    std::string policy = "static";     // or "dynamic": live membership
    std::string membership = {};       // lines of a [membership] table, when not empty
};

class local_cluster {
public:
    explicit local_cluster(cluster_options opt = {}) : options_(opt) {
        static int counter = 0;
        dir_ = std::filesystem::temp_directory_path() /
               fmt::format("dhtkit-cluster-{}-{}", ::getpid(), ++counter);
        std::filesystem::remove_all(dir_);
        std::filesystem::create_directories(dir_);
        // Hold every port at once so no two peers get the same one.
        std::vector<dhtkit::net::tcp_listener> held;
        std::string text = fmt::format(
            "[pool]\nthreads = {}\ndispatch = \"{}\"\n[limits]\nmax_key_bytes = {}\nmax_value_bytes = {}\n"
            "max_output_bytes = {}\nidle_timeout_s = {}\n[replication]\n"
            "backups = {}\nconsistency = \"{}\"\npolicy = \"{}\"\nmin_copies = {}\ntombstone_purge_s = {}\n"
            "[supervisor]\nmax_restarts = {}\n",
            opt.pool_threads, opt.dispatch, opt.max_key_bytes, opt.max_value_bytes, opt.max_output_bytes,
            opt.idle_timeout_s, opt.backups, opt.consistency, opt.policy, opt.min_copies, opt.tombstone_purge_s,
            opt.max_restarts);
        if (!opt.membership.empty()) text += "[membership]\n" + opt.membership + "\n";
        text += fmt::format("[storage]\nmode = \"{}\"\nfsync = \"{}\"\n", opt.storage, opt.fsync);
        text += fmt::format("[resp]\nroute = \"{}\"\n", opt.resp_route);
        if (opt.secret) {
            const auto file = dir_ / "cluster.secret";
            std::ofstream(file) << "a secret of this test's own, long enough\n";
            std::filesystem::permissions(file, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
        }
        if (!opt.password.empty()) {
            const auto file = dir_ / "client.password";
            std::ofstream(file) << opt.password << "\n";
            std::filesystem::permissions(file, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
        }
        if (opt.secret || !opt.password.empty()) {
            text += "[security]\n";
            if (opt.secret) text += "cluster_secret_file = \"cluster.secret\"\n";
            if (!opt.password.empty()) text += "client_password_file = \"client.password\"\n";
        }
        if (opt.own_network) {
            network_ = std::make_unique<test_network>(opt.peers);
            network_->enter();
        }
        for (int i = 0; i < opt.peers; ++i) {
            std::string host = "127.0.0.1";
            std::uint16_t port = 7400;  // a namespace of its own: no one else's ports there
            if (network_) {
                host = network_->host(i);
            } else {
                held.push_back(dhtkit::net::tcp_listener::bind(dhtkit::net::endpoint::parse("127.0.0.1:0")));
                port = held.back().local().port();
            }
            text += fmt::format("[[peers]]\nid = {}\nhost = \"{}\"\nport = {}\nshared = \"peer{}/shared\"\ndata = \"peer{}/data\"\n",
                                i, host, port, i, i);
            if (opt.resp) {
                std::uint16_t resp_port = 7500;
                if (!network_) {
                    held.push_back(dhtkit::net::tcp_listener::bind(dhtkit::net::endpoint::parse("127.0.0.1:0")));
                    resp_port = held.back().local().port();
                }
                text += fmt::format("resp_port = {}\n", resp_port);
            }
            std::filesystem::create_directories(dir_ / fmt::format("peer{}/shared", i));
        }
        config_file_ = dir_ / "cluster.toml";
        std::ofstream(config_file_) << text;
        config_ = dhtkit::load_config(config_file_);
        processes_.resize(static_cast<std::size_t>(opt.peers));
    }
    local_cluster(const local_cluster&) = delete;
    local_cluster& operator=(const local_cluster&) = delete;

    ~local_cluster() {
        for (std::size_t i = 0; i < processes_.size(); ++i) stop(static_cast<int>(i));
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }

    void start_all() {
        for (int i = 0; i < options_.peers; ++i) start(i);
    }

    // Starts peer `id` and returns once it serves (or throws, after 10 s, or when it exits first,
    // with what it said). `extra`: one more flag for it (nullptr: none).
    void start(int id, const char* extra = nullptr) {
        auto& p = processes_.at(static_cast<std::size_t>(id));
        if (p.pid > 0) throw std::logic_error("peer already running");
        // nullptr ends the list: the flags after the first nullptr are not passed.
        const char* mode = options_.supervised ? extra : "--no-supervisor";
        const char* more = options_.supervised ? nullptr : extra;
        std::vector<std::string> args{"--config", config_file_.string(), "--id", std::to_string(id), "--no-client"};
        if (mode) args.emplace_back(mode);
        if (mode && more) args.emplace_back(more);
        dhtkit::net::unique_fd ns;
        if (network_) ns = network_->namespace_of(id);
        spawn(p, id, args, std::move(ns));
    }

    // Starts a peer that is not in the file, joining through peer `through` (dhtkit-peer --join,
    // live membership only), in a folder of its own; returns once it serves. Its index (for kill,
    // stop, pid) follows the file's peers; its node id is what it chose (joined_id).
    int start_joining(int through) {
        const int index = static_cast<int>(processes_.size());
        processes_.emplace_back();
        auto listener = dhtkit::net::tcp_listener::bind(dhtkit::net::endpoint::parse("127.0.0.1:0"));
        const std::string listen = fmt::format("127.0.0.1:{}", listener.local().port());
        listener.close();
        joined_.push_back({index, listener.local().port(), dir_ / fmt::format("joined{}", index)});
        const std::string join = fmt::format("{}:{}", config_.peers.at(static_cast<std::size_t>(through)).host, port(through));
        spawn(processes_.back(), index,
              {"--config", config_file_.string(), "--join", join, "--listen", listen, "--dir",
               joined_.back().dir.string(), "--no-client", "--no-supervisor"},
              {});
        return index;
    }
    // The node id a peer started by start_joining chose.
    [[nodiscard]] std::uint64_t joined_id(int index) const {
        for (const auto& j : joined_)
            if (j.index == index) {
                std::uint64_t id = 0;
                std::ifstream(j.dir / "data" / "node_id") >> id;
                return id;
            }
        throw std::logic_error("not a joined peer");
    }

    // What peer `id` wrote to stderr since it came up and that nobody took yet (for a failing
    // test's words).
    std::string pending_stderr(int id) {
        auto& p = processes_.at(static_cast<std::size_t>(id));
        return p.said ? p.said->take() : std::string();
    }

    // Sends `sig`; for SIGKILL also reaps the process.
    void kill(int id, int sig = SIGKILL) {
        auto& p = processes_.at(static_cast<std::size_t>(id));
        if (p.pid <= 0) return;
        ::kill(p.pid, sig);
        if (sig == SIGKILL) reap(p, std::chrono::seconds(10));
    }

    // SIGTERM, then SIGKILL if it has not exited within 10 s. Returns the exit status.
    int stop(int id) {
        auto& p = processes_.at(static_cast<std::size_t>(id));
        if (p.pid <= 0) return p.last_status;
        ::kill(p.pid, SIGTERM);
        if (!reap(p, std::chrono::seconds(10))) {
            ::kill(p.pid, SIGKILL);
            reap(p, std::chrono::seconds(10));
        }
        return p.last_status;
    }

    // Waits up to `limit` for peer `id` to exit by itself; returns what it wrote to stderr after
    // it came up, and its wait status in `status` (-1 if it did not exit).
    std::string wait_exit(int id, std::chrono::milliseconds limit, int& status) {
        auto& p = processes_.at(static_cast<std::size_t>(id));
        const auto until = std::chrono::steady_clock::now() + limit;
        std::string said;
        if (p.said) {
            p.said->wait([](const std::string&) { return false; }, until);  // until every writer has gone
            said = p.said->take();
        }
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
        status = reap(p, std::max(left, std::chrono::milliseconds(0))) ? p.last_status : -1;
        return said;
    }

    // Cuts peer `id` off from the others and from the test, or lets it back (own_network only).
    void partition(int id) { network_->cut(id); }
    void heal(int id) { network_->heal(id); }
    // The peers in `side` hear each other and no one else (nor the test), until rejoin().
    void split(const std::vector<int>& side) { network_->split(side); }
    void rejoin(const std::vector<int>& side) { network_->rejoin(side); }
    // Peer `id`'s namespace, for a test thread to join (own_network only).
    [[nodiscard]] dhtkit::net::unique_fd network_namespace(int id) const { return network_->namespace_of(id); }

    [[nodiscard]] pid_t pid(int id) const { return processes_.at(static_cast<std::size_t>(id)).pid; }

    // True once every thread of peer `id` is stopped (after SIGSTOP), checked for up to 5 s.
    bool wait_stopped(int id) const {
        auto stat = fmt::format("/proc/{}/stat", processes_.at(static_cast<std::size_t>(id)).pid);
        for (int i = 0; i < 500; ++i) {
            std::ifstream in(stat);
            std::string pid, comm, state;
            in >> pid >> comm >> state;
            if (state == "T") return true;
            ::usleep(10000);
        }
        return false;
    }

    [[nodiscard]] const dhtkit::cluster_settings& config() const noexcept { return config_; }
    [[nodiscard]] const std::filesystem::path& config_file() const noexcept { return config_file_; }
    [[nodiscard]] std::filesystem::path shared(int id) const { return dir_ / fmt::format("peer{}/shared", id); }
    [[nodiscard]] const std::filesystem::path& dir() const noexcept { return dir_; }
    [[nodiscard]] std::uint16_t port(int id) const { return config_.peers.at(static_cast<std::size_t>(id)).port; }
    [[nodiscard]] std::uint16_t resp_port(int id) const { return config_.peers.at(static_cast<std::size_t>(id)).resp_port; }

    dhtkit::client client(std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) const {
        dhtkit::client_options o;
        o.request_timeout = timeout;
        return dhtkit::client(config_, o);
    }

private:
    struct process;
    // Starts dhtkit-peer with `args` (in namespace `ns` when valid), its stderr to a pipe of
    // ours, and returns once it serves (or throws, after 10 s, or when it exits first, with what
    // it said; it is reaped then and may be started again).
    void spawn(process& p, int id, const std::vector<std::string>& args, dhtkit::net::unique_fd ns) {
        int err[2];
        if (::pipe2(err, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
        // Built before fork: the child may only make async-signal-safe calls.
        std::vector<const char*> argv{DHTKIT_PEER_BINARY};
        for (const auto& a : args) argv.push_back(a.c_str());
        argv.push_back(nullptr);
        pid_t pid = ::fork();
        if (pid == 0) {
            if (ns.valid() && ::setns(ns.get(), CLONE_NEWNET) != 0) ::_exit(126);
            int null = ::open("/dev/null", O_RDWR);
            ::dup2(null, 0);
            ::dup2(null, 1);
            ::dup2(err[1], 2);
            ::execv(DHTKIT_PEER_BINARY, const_cast<char* const*>(argv.data()));
            ::_exit(127);
        }
        ::close(err[1]);
        p.pid = pid;
        p.said = std::make_unique<stderr_reader>(dhtkit::net::unique_fd(err[0]));
        p.pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
        try {
            wait_serving(p, id);
        } catch (...) {
            stop(id);
            throw;
        }
    }

    struct joined_peer {
        int index;
        std::uint16_t port;
        std::filesystem::path dir;
    };
    std::vector<joined_peer> joined_;

    struct process {
        pid_t pid = -1;
        dhtkit::net::unique_fd pidfd;
        std::unique_ptr<stderr_reader> said;
        int last_status = -1;
    };

    // Waits for the peer's "serving on" line.
    void wait_serving(process& p, int id) {
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        const bool up = p.said->wait([](const std::string& t) { return t.find("serving on") != std::string::npos; }, until);
        auto seen = p.said->take();
        if (!up)
            throw std::runtime_error(fmt::format("peer {} {}: {}", id, p.said->ended() ? "exited at start" : "did not come up", seen));
    }

    bool reap(process& p, std::chrono::milliseconds limit) {
        pollfd fd{p.pidfd.get(), POLLIN, 0};
        if (p.pidfd && ::poll(&fd, 1, static_cast<int>(limit.count())) <= 0) return false;
        int status = 0;
        if (::waitpid(p.pid, &status, 0) != p.pid) return false;
        p.last_status = status;
        p.pid = -1;
        p.pidfd.reset();
        p.said.reset();
        return true;
    }

    cluster_options options_;
    std::unique_ptr<test_network> network_;  // made first, gone last: the peers run inside it
    std::filesystem::path dir_;
    std::filesystem::path config_file_;
    dhtkit::cluster_settings config_;
    std::vector<process> processes_;
};

// Polls `done` every 10 ms for up to `limit`; true once it held. For conditions of other processes,
// which offer nothing to wait on.
template <class F>
bool eventually(F&& done, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
    auto until = std::chrono::steady_clock::now() + limit;
    while (!done()) {
        if (std::chrono::steady_clock::now() > until) return false;
        ::usleep(10000);
    }
    return true;
}

// One "name=value" line of peer `peer`'s stats, the value only; empty when absent or unanswered.
inline std::string stat_value(dhtkit::client& c, std::size_t peer, std::string_view name) {
    auto r = c.call(peer, dhtkit::protocol::opcode::stats, {});
    if (!r.ok()) return {};
    std::string text = "\n" + r.value;
    auto at = text.find(fmt::format("\n{}=", name));
    if (at == std::string::npos) return {};
    auto start = at + name.size() + 2;
    return text.substr(start, text.find('\n', start) - start);
}

// The same, as a number; 0 when the peer did not answer (a busy peer under a sanitizer may time
// out a request: a waiting loop asks again).
inline std::uint64_t stat_count(dhtkit::client& c, std::size_t peer, std::string_view name) {
    const auto v = stat_value(c, peer, name);
    return v.empty() ? 0 : std::stoull(v);
}

// A raw connection for speaking frames (or garbage) directly.
inline dhtkit::net::tcp_stream raw_connect(const local_cluster& c, int id) {
    const auto& p = c.config().peers.at(static_cast<std::size_t>(id));
    return dhtkit::net::tcp_stream::connect(dhtkit::net::endpoint::parse(fmt::format("{}:{}", p.host, p.port)),
                                            std::chrono::seconds(2));
}

// What peer `peer` holds of `key` itself, whatever its leases say: the checker's view of each
// holder's own table. nullopt when it did not answer.
struct own_entry {
    bool present = false;  // an entry, live or a tombstone
    bool deleted = false;
    std::string value;
};
inline std::optional<own_entry> own_copy(dhtkit::client& c, std::size_t peer, std::string_view key) {
    auto r = c.call(peer, dhtkit::protocol::opcode::get, key, {}, true, dhtkit::protocol::flag_own_copy);
    if (r.code == dhtkit::protocol::status::not_found) return own_entry{};
    if (!r.ok() || r.value.size() < 1) return std::nullopt;
    auto v = dhtkit::read_versioned(std::string_view(r.value).substr(1));
    if (!v) return std::nullopt;
    return own_entry{true, v->tombstone, std::string(v->payload)};
}

}  // namespace test
