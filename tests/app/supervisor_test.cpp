#include <catch2/catch.hpp>

#include <dhtkit/app/supervisor.hpp>

#include <sys/wait.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

using namespace dhtkit;
using namespace std::chrono_literals;

namespace {

// A counter the workers share through a file: each child is a fresh process.
struct run_counter {
    std::filesystem::path file = std::filesystem::temp_directory_path() /
                                 ("dhtkit-supervisor-" + std::to_string(::getpid()));
    run_counter() { std::filesystem::remove(file); }
    ~run_counter() { std::filesystem::remove(file); }
    int bump() const {
        int n = read();
        std::ofstream(file) << n + 1;
        return n + 1;
    }
    int read() const {
        int n = 0;
        std::ifstream(file) >> n;
        return n;
    }
};

supervisor_options fast() {
    supervisor_options o;
    o.first_backoff = 1ms;
    o.max_backoff = 4ms;
    o.max_restarts = 3;
    o.window = 60s;
    return o;
}

}  // namespace

TEST_CASE("a worker that crashes is restarted, and a clean exit ends the supervisor") {
    run_counter runs;
    std::vector<std::string> log;
    supervisor s(fast(), [&](const std::string& line) { log.push_back(line); });
    int rc = s.run([&] {
        int n = runs.bump();
        // SIGKILL, as kill -9 would: unlike abort() or a segfault, neither Catch's handlers nor a
        // sanitizer's (inherited through fork) can turn it into something else.
        if (n == 1) ::kill(::getpid(), SIGKILL);
        if (n == 2) return 4;  // a non-zero exit counts as a failure too
        return std::getenv("DHTKIT_RESTARTS") == std::string("2") ? 0 : 9;
    }, -1);
    CHECK(rc == 0);
    CHECK(runs.read() == 3);
    REQUIRE(log.size() == 3);
    CHECK_THAT(log[0], Catch::Contains("killed by signal 9") && Catch::Contains("restarting"));
    CHECK_THAT(log[1], Catch::Contains("exited with status 4"));
    CHECK_THAT(log[2], Catch::Contains("exited with status 0"));
}

TEST_CASE("a crash loop ends with the supervisor giving up, and saying why") {
    run_counter runs;
    std::vector<std::string> log;
    supervisor s(fast(), [&](const std::string& line) { log.push_back(line); });
    int rc = s.run([&] {
        runs.bump();
        ::kill(::getpid(), SIGKILL);
        return 0;
    }, -1);
    CHECK(rc == 1);
    CHECK(runs.read() == 4);  // the first run and three restarts
    REQUIRE_FALSE(log.empty());
    CHECK_THAT(log.back(), Catch::Contains("giving up") && Catch::Contains("restarted 3 times") &&
                               Catch::Contains("signal 9"));
}

TEST_CASE("a worker that cannot start is not restarted") {
    run_counter runs;
    std::vector<std::string> log;
    supervisor s(fast(), [&](const std::string& line) { log.push_back(line); });
    int rc = s.run([&] {
        runs.bump();
        return fast().fatal_status;
    }, -1);
    CHECK(rc == 1);
    CHECK(runs.read() == 1);
    REQUIRE(log.size() == 1);
    CHECK_THAT(log[0], Catch::Contains("giving up") && Catch::Contains("cannot start"));
}

TEST_CASE("SIGTERM to the supervisor reaches the worker, and nothing is restarted") {
    // The supervisor runs in a child of the test, so the signal is not the test's own.
    int ready[2];
    REQUIRE(::pipe(ready) == 0);
    // Blocked before the fork, as dhtkit-peer blocks it before it starts any thread: a signal sent
    // to a process goes to any of its threads that does not block it, and under a sanitizer the
    // child has a thread of the runtime's, which would take it (into Catch's handler) instead.
    sigset_t set, before;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    ::pthread_sigmask(SIG_BLOCK, &set, &before);
    pid_t monitor = ::fork();
    if (monitor != 0) ::pthread_sigmask(SIG_SETMASK, &before, nullptr);
    if (monitor == 0) {
        int sfd = ::signalfd(-1, &set, SFD_CLOEXEC);
        supervisor s(fast());
        int rc = s.run([&] {
            // The worker dies of SIGTERM like a real one: by the default action, not by the
            // handler Catch installed, which a ThreadSanitizer runtime defers to the next call it
            // intercepts (and pause() may never return to make one: the test hung for 900 s).
            ::signal(SIGTERM, SIG_DFL);
            ::sigprocmask(SIG_UNBLOCK, &set, nullptr);
            char c = 'r';
            [[maybe_unused]] auto w = ::write(ready[1], &c, 1);
            for (;;) ::pause();
            return 0;
        }, sfd);
        std::_Exit(rc == 1 ? 42 : 43);  // 42: the worker ended by the forwarded signal, no restart
    }
    ::close(ready[1]);
    char c;
    REQUIRE(::read(ready[0], &c, 1) == 1);  // the worker runs
    ::kill(monitor, SIGTERM);
    int status = 0;
    REQUIRE(::waitpid(monitor, &status, 0) == monitor);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 42);
    CHECK(::read(ready[0], &c, 1) == 0);  // no second worker announced itself
    ::close(ready[0]);
}

TEST_CASE("the wait before a restart starts over after a worker ran for a whole window") {
    run_counter runs;
    std::vector<std::string> log;
    supervisor_options o;
    o.first_backoff = 10ms;
    o.max_backoff = 1000ms;
    o.max_restarts = 10;
    o.window = 150ms;
    supervisor s(o, [&](const std::string& line) { log.push_back(line); });
    int rc = s.run([&] {
        int n = runs.bump();
        if (n == 3) ::usleep(250000);  // a healthy run longer than the window, then a crash
        if (n <= 3) ::kill(::getpid(), SIGKILL);
        return 0;
    }, -1);
    CHECK(rc == 0);
    std::vector<std::string> waits;
    for (const auto& line : log)
        if (auto at = line.find("restarting in "); at != std::string::npos) waits.push_back(line.substr(at));
    CHECK(waits == std::vector<std::string>{"restarting in 10 ms", "restarting in 20 ms", "restarting in 10 ms"});
}
