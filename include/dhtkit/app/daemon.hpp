#pragma once
// Running a program as a daemon: a pid file that is locked for as long as the daemon lives, a
// detach that tells the starting process when (and whether) the daemon is ready, and a stop that
// signals a daemon through its pid file and waits for it to go.
//
// The pid file holds the pid as text and an flock() held by the daemon: a file whose lock nobody
// holds is stale (its process died without removing it) and is taken over; a file whose lock is
// held means a live daemon, and a second start is refused.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>

#include <fmt/format.h>

#include "dhtkit/net/unique_fd.hpp"

namespace dhtkit {

struct daemon_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

class pid_file {
public:
    // Takes the file, or throws daemon_error naming the live process that holds it.
    explicit pid_file(std::filesystem::path path) : path_(std::move(path)) {
        fd_.reset(::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
        if (!fd_) throw daemon_error(fmt::format("pid file {}: {}", path_.string(), std::strerror(errno)));
        if (::flock(fd_.get(), LOCK_EX | LOCK_NB) != 0) {
            auto holder = read_pid(path_);
            throw daemon_error(fmt::format("already running: {} is held by process {}", path_.string(),
                                           holder ? std::to_string(*holder) : std::string("(unknown)")));
        }
    }
    pid_file(const pid_file&) = delete;
    pid_file& operator=(const pid_file&) = delete;
    // Removes the file if this process still owns it (a forked child that inherited it does not).
    ~pid_file() {
        if (fd_ && owner_ == ::getpid()) ::unlink(path_.c_str());
    }

    // Records the calling process as the holder (call it after the last fork).
    void write_self() {
        owner_ = ::getpid();
        auto text = fmt::format("{}\n", owner_);
        if (::ftruncate(fd_.get(), 0) != 0 || ::pwrite(fd_.get(), text.data(), text.size(), 0) != static_cast<ssize_t>(text.size()))
            throw daemon_error(fmt::format("pid file {}: {}", path_.string(), std::strerror(errno)));
    }

    [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

    static std::optional<pid_t> read_pid(const std::filesystem::path& p) {
        net::unique_fd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
        if (!fd) return std::nullopt;
        char buf[32] = {};
        auto n = ::read(fd.get(), buf, sizeof buf - 1);
        if (n <= 0) return std::nullopt;
        char* end = nullptr;
        long v = std::strtol(buf, &end, 10);
        if (v <= 0 || end == buf) return std::nullopt;
        return static_cast<pid_t>(v);
    }

    // True when a live process holds the lock of the file at `p`.
    static bool held(const std::filesystem::path& p) {
        net::unique_fd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
        if (!fd) return false;
        return ::flock(fd.get(), LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    }

private:
    std::filesystem::path path_;
    net::unique_fd fd_;
    pid_t owner_ = -1;
};

// The daemon's end of the readiness pipe: one line, "ok ..." or "error: ...", then closed.
class readiness {
public:
    readiness() = default;
    explicit readiness(int fd) : fd_(fd) {}
    // Tells the starting process; later calls (a restarted worker's) do nothing.
    void tell(std::string_view line) noexcept {
        if (!fd_) return;
        std::string text(line);
        text += '\n';
        [[maybe_unused]] auto n = ::write(fd_.get(), text.data(), text.size());  // the reader may be gone: EPIPE is fine
        fd_.reset();
    }
    [[nodiscard]] int fd() const noexcept { return fd_.get(); }

private:
    net::unique_fd fd_;
};

// Detaches: the calling process forks and waits for the daemon's readiness line, then exits the
// program with 0 ("ok") or 1 (an error, or the daemon ended before saying anything, or `timeout`).
// Only the daemon returns from this call: in a new session, with no controlling terminal, stdin,
// stdout and stderr on /dev/null, the working directory unchanged (paths are resolved before),
// and the write end of the readiness pipe in hand.
inline readiness detach(std::chrono::seconds timeout, const std::function<void(const std::string&)>& say) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe");
    pid_t child = ::fork();
    if (child < 0) throw std::system_error(errno, std::generic_category(), "fork");
    if (child > 0) {
        ::close(fds[1]);
        std::string line;
        auto until = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
            pollfd p{fds[0], POLLIN, 0};
            if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
                say(fmt::format("error: the daemon did not report ready within {} s", timeout.count()));
                std::exit(1);
            }
            char buf[512];
            auto n = ::read(fds[0], buf, sizeof buf);
            if (n > 0) line.append(buf, static_cast<std::size_t>(n));
            if (n <= 0 || line.find('\n') != std::string::npos) break;
        }
        int status = 0;
        ::waitpid(child, &status, 0);  // the intermediate process, which exits at once
        if (auto nl = line.find('\n'); nl != std::string::npos) line.resize(nl);
        if (line.rfind("ok", 0) == 0) {
            say(line.substr(line.size() > 3 ? 3 : line.size()));
            std::exit(0);
        }
        say(line.empty() ? std::string("error: the daemon exited before it was ready") : line);
        std::exit(1);
    }
    ::close(fds[0]);
    if (::setsid() < 0) std::_Exit(1);
    // A second fork: the daemon is not a session leader, so it can never acquire a terminal.
    pid_t daemon = ::fork();
    if (daemon < 0) std::_Exit(1);
    if (daemon > 0) std::_Exit(0);
    int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        ::dup2(null, 0);
        ::dup2(null, 1);
        ::dup2(null, 2);
        if (null > 2) ::close(null);
    }
    return readiness(fds[1]);
}

// Signals the daemon of pid file `p` with SIGTERM and waits up to `timeout` for it to exit.
// Returns a message for the user; throws daemon_error when there is nothing to stop or it stays.
inline std::string stop_daemon(const std::filesystem::path& p, std::chrono::milliseconds timeout) {
    auto pid = pid_file::read_pid(p);
    if (!pid) throw daemon_error(fmt::format("not running: no pid in {}", p.string()));
    if (!pid_file::held(p)) throw daemon_error(fmt::format("not running: {} is stale (process {} is gone)", p.string(), *pid));
    net::unique_fd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, *pid, 0)));
    if (!pidfd) throw daemon_error(fmt::format("process {}: {}", *pid, std::strerror(errno)));
    if (::kill(*pid, SIGTERM) != 0) throw daemon_error(fmt::format("signalling process {}: {}", *pid, std::strerror(errno)));
    pollfd w{pidfd.get(), POLLIN, 0};
    if (::poll(&w, 1, static_cast<int>(timeout.count())) <= 0)
        throw daemon_error(fmt::format("process {} did not exit within {} ms of SIGTERM", *pid, timeout.count()));
    return fmt::format("stopped process {}", *pid);
}

}  // namespace dhtkit
