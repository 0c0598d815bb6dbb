// The acceptor out of descriptors: the waiting client hears a close (taken on the reserved
// descriptor), nothing is handed on, and the reserve is held again for the next time.
// Run in a child process: lowering RLIMIT_NOFILE would starve the other tests.
#include <catch2/catch.hpp>

#include <dhtkit/net/acceptor.hpp>
#include <dhtkit/net/socket.hpp>

#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>

using namespace dhtkit::net;

namespace {

// In the child: 0 when the client saw its connection closed and nothing was taken, else the step that failed.
int shed_when_out_of_descriptors() {
    auto listener = tcp_listener::bind(endpoint::parse("127.0.0.1:0"));
    acceptor intake;
    auto client = tcp_stream::connect(listener.local(), std::chrono::seconds(2));
    // No descriptor left: the lowest free one becomes the limit.
    const int lowest_free = ::dup(0);
    if (lowest_free < 0) return 10;
    ::close(lowest_free);
    rlimit lim{};
    ::getrlimit(RLIMIT_NOFILE, &lim);
    lim.rlim_cur = static_cast<rlim_t>(lowest_free);
    if (::setrlimit(RLIMIT_NOFILE, &lim) != 0) return 11;
    if (::dup(0) >= 0) return 12;  // the test's own premise: out of descriptors
    int taken = 0;
    intake.accept_all(listener, [&](tcp_stream) { ++taken; });
    if (taken != 0) return 13;
    pollfd p{client.fd(), POLLIN, 0};
    if (::poll(&p, 1, 2000) != 1) return 14;  // it hears something, not nothing
    char byte = 0;
    if (::recv(client.fd(), &byte, 1, 0) > 0) return 15;  // a close (or a reset), not data
    // The reserve is held again: the descriptor it gave up is taken back.
    if (::dup(0) >= 0) return 16;
    return 0;
}

}  // namespace

TEST_CASE("out of descriptors, the acceptor closes the waiting connection on its reserve instead of leaving it waiting") {
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) ::_exit(shed_when_out_of_descriptors());
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
}
