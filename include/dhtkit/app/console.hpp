#pragma once
// The programs' foreground: reads command lines (with a prompt when stdin is a terminal) until
// end of input, `quit`, SIGTERM, or — when stdin is not a terminal — SIGINT. Signals arrive
// through a signalfd, so they end a wait cleanly instead of interrupting whatever thread they hit.
//
// Each line runs on a thread of its own while the console keeps watching the signals. At a
// terminal, Ctrl-C cancels the command in progress: its stop is requested, its output dropped, and
// the prompt is back at once (the command ends in the background, at its next check of the stop
// or its own timeout). Ctrl-C at the prompt drops what was typed. Where lines come from is a
// line_input: stdin as it is (line_input's default), or a line editor with history, which a
// program supplies (examples/line_editor.hpp: libedit).

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <iostream>
#include <list>
#include <memory>
#include <sstream>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

#include "dhtkit/net/unique_fd.hpp"
#include "dhtkit/net/wakeup.hpp"

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

// Cuts bytes into lines as they come ('\n', a '\r' before it dropped), looking at each byte once:
// a line of many megabytes (a value put from a pipe) costs its length, not its length times the
// number of reads it took.
class line_splitter {
public:
    template <class F>
    void feed(std::string_view bytes, F&& line) {
        std::size_t from = pending_.size();  // what is pending holds no newline
        pending_.append(bytes);
        std::size_t start = 0;
        for (;;) {
            const auto nl = pending_.find('\n', from);
            examined_ += (nl == std::string::npos ? pending_.size() : nl + 1) - from;
            if (nl == std::string::npos) break;
            std::string one = pending_.substr(start, nl - start);
            if (!one.empty() && one.back() == '\r') one.pop_back();
            start = from = nl + 1;
            line(std::move(one));
        }
        pending_.erase(0, start);
    }
    // The unfinished last line, if any (at the end of input).
    [[nodiscard]] bool has_rest() const noexcept { return !pending_.empty(); }
    std::string take_rest() { return std::exchange(pending_, {}); }
    void clear() noexcept { pending_.clear(); }
    // Bytes looked at for newlines so far: the input's length, give or take nothing.
    [[nodiscard]] std::uint64_t examined() const noexcept { return examined_; }

private:
    std::string pending_;
    std::uint64_t examined_ = 0;
};

// Where the console's lines come from. This one reads stdin as it comes (a pipe, a file, a
// terminal in its own line mode), showing `prompt` before each line when stdin is a terminal.
class line_input {
public:
    explicit line_input(std::string prompt = {}) : prompt_(std::move(prompt)) {}
    virtual ~line_input() = default;

    // Ready for the next line: shows the prompt.
    virtual void start_line() {
        if (!prompt_.empty() && ::isatty(0)) {
            std::fwrite(prompt_.data(), 1, prompt_.size(), stdout);
            std::fflush(stdout);
        }
    }
    // Stdin is readable: takes what is there and passes each whole line to `line`; false at end
    // of input. Called only between start_line() and the next line.
    virtual bool read_some(const std::function<void(std::string)>& line) {
        thread_local std::array<char, 64 * 1024> buf;
        ssize_t got;
        do got = ::read(0, buf.data(), buf.size());
        while (got < 0 && errno == EINTR);
        if (got <= 0) {
            if (lines_.has_rest()) line(lines_.take_rest());
            return false;
        }
        lines_.feed({buf.data(), static_cast<std::size_t>(got)}, line);
        return true;
    }
    // Ctrl-C at the prompt: drops what was typed.
    virtual void discard_line() {
        lines_.clear();
        std::fputs("\n", stdout);
    }
    // A command is about to run: the terminal is the command's again.
    virtual void end_line() {}

protected:
    std::string prompt_;
    line_splitter lines_;
};

enum class console_end { input_closed, quit, signal };

// Runs one line; writes its results to `out` and errors to `err`, which the console prints when it
// ends (not at all when it was cancelled); false to quit.
using line_handler = std::function<bool(const std::string& line, std::stop_token stop, std::ostream& out, std::ostream& err)>;

namespace detail {

// One line being carried out on its own thread.
struct console_job {
    std::ostringstream out, err;
    std::atomic<bool> done{false};
    bool go_on = true;  // written by the job's thread before `done`
    std::jthread thread;
};

}  // namespace detail

// With `input` null, only waits for a signal (a peer serving without a prompt).
inline console_end run_console(int signal_fd, line_input* input, const line_handler& on_line) {
    const bool interactive = input && ::isatty(0);
    const net::wakeup finished;
    std::list<std::unique_ptr<detail::console_job>> abandoned;  // cancelled, still ending
    std::unique_ptr<detail::console_job> running;
    std::list<std::string> queued;  // lines read ahead of the one running (a pipe gives many at once)
    bool input_open = input != nullptr;
    bool at_prompt = false;

    auto start_next = [&] {
        if (running || queued.empty()) return;
        auto job = std::make_unique<detail::console_job>();
        job->thread = std::jthread([&on_line, j = job.get(), line = std::move(queued.front()),
                                    &finished](std::stop_token stop) {
            try {
                j->go_on = on_line(line, stop, j->out, j->err);
            } catch (const std::exception& e) {
                j->err << "error: " << e.what() << '\n';
            }
            j->done.store(true, std::memory_order_release);
            finished.notify();
        });
        queued.pop_front();
        running = std::move(job);
    };

    if (input) {
        input->start_line();
        at_prompt = true;
    }
    for (;;) {
        pollfd fds[3] = {{signal_fd, POLLIN, 0}, {finished.fd(), POLLIN, 0}, {0, POLLIN, 0}};
        const bool reading = input_open && !running && queued.empty();
        int n = ::poll(fds, reading ? 3 : 2, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw std::system_error(errno, std::generic_category(), "poll on stdin");
        }
        if (fds[0].revents) {
            signalfd_siginfo info{};
            [[maybe_unused]] auto r = ::read(signal_fd, &info, sizeof info);
            if (!interactive || info.ssi_signo != SIGINT) return console_end::signal;
            if (running) {
                running->thread.request_stop();
                abandoned.push_back(std::move(running));
                queued.clear();
                std::fputs("^C cancelled\n", stdout);
            } else {
                input->discard_line();
            }
            input->start_line();
            at_prompt = true;
            continue;
        }
        if (fds[1].revents) {
            finished.drain();
            abandoned.remove_if([](const auto& j) { return j->done.load(std::memory_order_acquire); });
            if (running && running->done.load(std::memory_order_acquire)) {
                running->thread.join();
                std::cout << running->out.str() << std::flush;
                std::cerr << running->err.str() << std::flush;
                const bool go_on = running->go_on;
                running.reset();
                if (!go_on) return console_end::quit;
                start_next();
                if (!running) {
                    if (!input_open) return console_end::input_closed;
                    input->start_line();
                    at_prompt = true;
                }
            }
            continue;
        }
        if (reading && fds[2].revents) {
            input_open = input->read_some([&](std::string line) { queued.push_back(std::move(line)); });
            if (!queued.empty() && at_prompt) {
                input->end_line();
                at_prompt = false;
            }
            start_next();
            if (!running && !input_open) return console_end::input_closed;
        }
    }
}

}  // namespace dhtkit
