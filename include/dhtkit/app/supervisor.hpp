#pragma once
// The monitor half of a peer: runs the worker in a child process and starts a new one when it
// dies abnormally (a signal, or a non-zero exit), waiting 0.1 s after the first failure and
// doubling to 5 s; a worker that ran for a whole window before it died starts the wait over at
// 0.1 s. It gives up, saying why, after too many restarts within a window. SIGTERM and
// SIGINT (read from the caller's signal descriptor) are forwarded to the worker; the supervisor
// then returns once the worker has exited, with no restart.
//
// The worker learns how often it was restarted, and when, from DHTKIT_RESTARTS and
// DHTKIT_LAST_RESTART (seconds since the epoch) in its environment. A worker that exits with
// `fatal_status` is not restarted: it could not start at all, and would not the next time.

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <functional>
#include <string>
#include <system_error>

#include <fmt/format.h>

#include "dhtkit/net/unique_fd.hpp"

namespace dhtkit {

struct supervisor_options {
    std::chrono::milliseconds first_backoff{100};
    std::chrono::milliseconds max_backoff{5000};
    unsigned max_restarts = 5;                // within `window`; one more and the supervisor gives up
    std::chrono::milliseconds window{60000};
    int fatal_status = 3;  // a worker exit status that means restarting cannot help (a bad config)
    // False when the worker reads a terminal: the terminal sends Ctrl-C's SIGINT to the whole
    // foreground group, worker included (which cancels a command with it), so passing it on
    // would deliver it twice. SIGTERM is always passed on.
    bool forward_interrupt = true;
};

// How a process ended, in words.
inline std::string describe_exit(int status) {
    if (WIFEXITED(status)) return fmt::format("exited with status {}", WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return fmt::format("killed by signal {} ({})", WTERMSIG(status), ::strsignal(WTERMSIG(status)));
    return fmt::format("ended with wait status {}", status);
}

// What a worker learns from its supervisor through the environment.
struct restart_info {
    std::uint64_t restarts = 0;
    std::int64_t last_restart = 0;  // seconds since the epoch; 0 for never
};

inline restart_info restarts_from_environment() {
    restart_info r;
    if (const char* n = std::getenv("DHTKIT_RESTARTS")) r.restarts = std::strtoull(n, nullptr, 10);
    if (const char* t = std::getenv("DHTKIT_LAST_RESTART")) r.last_restart = std::strtoll(t, nullptr, 10);
    return r;
}

class supervisor {
public:
    using clock = std::chrono::steady_clock;

    explicit supervisor(supervisor_options opt = {}, std::function<void(const std::string&)> log = {})
        : options_(opt), log_(std::move(log)) {}

    // Runs `worker` (in a child, whose return value is its exit status) until it exits cleanly,
    // a forwarded signal ends it, or the supervisor gives up. Returns 0 for a clean end, 1 when it
    // gave up. `signal_fd` is a signalfd for SIGTERM/SIGINT, blocked in this process.
    int run(const std::function<int()>& worker, int signal_fd) {
        auto backoff = options_.first_backoff;
        for (;;) {
            const auto started = clock::now();
            pid_t pid = ::fork();
            if (pid < 0) throw std::system_error(errno, std::generic_category(), "fork of the worker");
            if (pid == 0) {
                ::setenv("DHTKIT_RESTARTS", std::to_string(restarts_.size()).c_str(), 1);
                ::setenv("DHTKIT_LAST_RESTART", std::to_string(last_restart_).c_str(), 1);
                std::_Exit(worker());
            }
            net::unique_fd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
            auto [status, forwarded] = wait_child(pid, pidfd.get(), signal_fd);
            if (forwarded || (WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
                say(fmt::format("worker {} {}", pid, describe_exit(status)));
                return forwarded && !(WIFEXITED(status) && WEXITSTATUS(status) == 0) ? 1 : 0;
            }
            if (WIFEXITED(status) && WEXITSTATUS(status) == options_.fatal_status) {
                say(fmt::format("giving up: the worker {}, which means it cannot start", describe_exit(status)));
                return 1;
            }
            const auto now = clock::now();
            // A long healthy run: this failure is a new story, not the next chapter of a crash loop.
            if (now - started >= options_.window) backoff = options_.first_backoff;
            while (!restarts_.empty() && now - restarts_.front() > options_.window) restarts_.pop_front();
            if (restarts_.size() >= options_.max_restarts) {
                say(fmt::format("giving up: the worker {}, and it was restarted {} times within {} s", describe_exit(status),
                                restarts_.size(), std::chrono::duration_cast<std::chrono::seconds>(options_.window).count()));
                return 1;
            }
            say(fmt::format("worker {} {}; restarting in {} ms", pid, describe_exit(status), backoff.count()));
            if (wait_signal(signal_fd, backoff)) return 0;  // asked to stop while backing off
            restarts_.push_back(clock::now());
            last_restart_ = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
            backoff = std::min(backoff * 2, options_.max_backoff);
        }
    }

    [[nodiscard]] std::size_t restarts_in_window() const noexcept { return restarts_.size(); }

private:
    // Waits for the child; a stop signal meanwhile is passed on to it.
    std::pair<int, bool> wait_child(pid_t pid, int pidfd, int signal_fd) {
        bool forwarded = false;
        for (;;) {
            pollfd fds[2] = {{pidfd, POLLIN, 0}, {signal_fd, POLLIN, 0}};
            int n = ::poll(fds, signal_fd >= 0 ? 2 : 1, -1);
            if (n < 0 && errno != EINTR) throw std::system_error(errno, std::generic_category(), "poll on the worker");
            if (n > 0 && fds[1].revents) {
                signalfd_siginfo info{};
                if (::read(signal_fd, &info, sizeof info) == sizeof info &&
                    (info.ssi_signo != SIGINT || options_.forward_interrupt)) {
                    ::kill(pid, static_cast<int>(info.ssi_signo));
                    forwarded = true;
                }
            }
            if (n > 0 && fds[0].revents) {
                int status = 0;
                if (::waitpid(pid, &status, 0) == pid) return {status, forwarded};
            }
        }
    }

    // True when a stop signal arrived within `d`.
    static bool wait_signal(int signal_fd, std::chrono::milliseconds d) {
        pollfd fd{signal_fd, POLLIN, 0};
        return signal_fd >= 0 && ::poll(&fd, 1, static_cast<int>(d.count())) > 0;
    }

    void say(const std::string& line) {
        if (log_) log_(line);
    }

    supervisor_options options_;
    std::function<void(const std::string&)> log_;
    std::deque<clock::time_point> restarts_;
    long long last_restart_ = 0;
};

}  // namespace dhtkit
