#pragma once
// The peer program's foreground: reads command lines from stdin (with a prompt when stdin is a
// terminal) until end of input, `quit`, or SIGINT/SIGTERM. Signals arrive through a signalfd,
// so they end the wait cleanly instead of interrupting whatever thread they happen to hit.

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <functional>
#include <string>
#include <string_view>
#include <system_error>

#include "dhtkit/net/unique_fd.hpp"

namespace dhtkit {

// Blocks SIGINT and SIGTERM in the calling thread and every thread it starts afterwards; call it
// first thing in main(). Returns a descriptor that becomes readable when one arrives.
inline net::unique_fd block_stop_signals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (::pthread_sigmask(SIG_BLOCK, &set, nullptr) != 0)
        throw std::system_error(errno, std::generic_category(), "blocking SIGINT/SIGTERM");
    net::unique_fd fd(::signalfd(-1, &set, SFD_CLOEXEC));
    if (!fd) throw std::system_error(errno, std::generic_category(), "signalfd");
    return fd;
}

enum class console_end { input_closed, quit, signal };

// Calls `on_line` for each line; it returns false to quit. `prompt` is shown before each line
// when stdin is a terminal. With `read_input` false, only waits for a signal.
inline console_end run_console(int signal_fd, bool read_input, std::string_view prompt,
                               const std::function<bool(std::string_view)>& on_line) {
    const bool interactive = read_input && ::isatty(0);
    std::string pending;
    auto show_prompt = [&] {
        if (interactive) {
            std::fwrite(prompt.data(), 1, prompt.size(), stdout);
            std::fflush(stdout);
        }
    };
    show_prompt();
    for (;;) {
        pollfd fds[2] = {{signal_fd, POLLIN, 0}, {0, POLLIN, 0}};
        int n = ::poll(fds, read_input ? 2 : 1, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw std::system_error(errno, std::generic_category(), "poll on stdin");
        }
        if (fds[0].revents) {
            signalfd_siginfo info;
            [[maybe_unused]] auto r = ::read(signal_fd, &info, sizeof info);
            return console_end::signal;
        }
        if (!read_input || !fds[1].revents) continue;
        char buf[4096];
        ssize_t got = ::read(0, buf, sizeof buf);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
            if (!pending.empty() && !on_line(pending)) return console_end::quit;
            return console_end::input_closed;
        }
        pending.append(buf, static_cast<std::size_t>(got));
        std::size_t start = 0;
        for (auto nl = pending.find('\n'); nl != std::string::npos; nl = pending.find('\n', start)) {
            std::string_view line(pending.data() + start, nl - start);
            if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
            start = nl + 1;
            if (!on_line(line)) return console_end::quit;
            show_prompt();
        }
        pending.erase(0, start);
    }
}

}  // namespace dhtkit
