#pragma once
// A network of the test's own: one network namespace per peer, each with a veth whose other end
// is a port of a bridge in a hub namespace, where the test's own threads run. Cutting a peer's
// bridge port off is a partition: its packets are dropped both ways, its TCP connections stay
// open and hear nothing, as across a failed switch. Everything is made with iproute2's `ip`
// (root only) and removed by the destructor.

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>

#include <dhtkit/net/unique_fd.hpp>

namespace test {

class test_network {
public:
    // Whether this process may make namespaces (it runs as root).
    [[nodiscard]] static bool available() { return ::geteuid() == 0; }

    explicit test_network(int peers) : peers_(peers) {
        static int counter = 0;
        const int pid = static_cast<int>(::getpid());
        tag_ = fmt::format("dk{}x{}", pid, ++counter);
        subnet_ = fmt::format("10.{}.{}", 100 + pid % 100, (pid / 100 + counter) % 250);
        try {
            run("ip netns add {}", hub());
            run("ip netns exec {} ip link set lo up", hub());
            run("ip netns exec {} ip link add br0 type bridge", hub());
            run("ip netns exec {} ip addr add {}.1/24 dev br0", hub(), subnet_);
            run("ip netns exec {} ip link set br0 up", hub());
            for (int i = 0; i < peers; ++i) {
                run("ip netns add {}", ns(i));
                run("ip link add vp{} netns {} type veth peer name vh{} netns {}", i, ns(i), i, hub());
                run("ip netns exec {} ip link set lo up", ns(i));
                run("ip netns exec {} ip addr add {}/24 dev vp{}", ns(i), host(i), i);
                run("ip netns exec {} ip link set vp{} up", ns(i), i);
                run("ip netns exec {} ip link set vh{} master br0", hub(), i);
                run("ip netns exec {} ip link set vh{} up", hub(), i);
            }
        } catch (...) {
            remove();
            throw;
        }
    }
    test_network(const test_network&) = delete;
    test_network& operator=(const test_network&) = delete;
    ~test_network() {
        leave();
        remove();
    }

    [[nodiscard]] std::string host(int i) const { return fmt::format("{}.{}", subnet_, 10 + i); }
    [[nodiscard]] std::string ns(int i) const { return fmt::format("{}p{}", tag_, i); }
    [[nodiscard]] std::string hub() const { return tag_ + "h"; }

    // Moves the calling thread (and the threads it starts from now on) into the hub.
    void enter() {
        if (home_.valid()) return;
        home_.reset(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
        dhtkit::net::unique_fd hub_ns(::open(fmt::format("/run/netns/{}", hub()).c_str(), O_RDONLY | O_CLOEXEC));
        if (!home_.valid() || !hub_ns.valid() || ::setns(hub_ns.get(), CLONE_NEWNET) != 0)
            throw std::runtime_error("cannot enter the test network's hub namespace");
    }
    // Back to the namespace the thread came from.
    void leave() noexcept {
        if (!home_.valid()) return;
        [[maybe_unused]] int r = ::setns(home_.get(), CLONE_NEWNET);
        home_.reset();
    }

    // A descriptor of peer i's namespace, for a child to setns() into before it execs.
    [[nodiscard]] dhtkit::net::unique_fd namespace_of(int i) const {
        return dhtkit::net::unique_fd(::open(fmt::format("/run/netns/{}", ns(i)).c_str(), O_RDONLY | O_CLOEXEC));
    }

    // Cuts peer i off from everyone (its packets are dropped both ways), or lets it back.
    void cut(int i) { run("ip netns exec {} ip link set vh{} down", hub(), i); }
    void heal(int i) { run("ip netns exec {} ip link set vh{} up", hub(), i); }

    // Splits the network in two: the peers in `side` move to a second bridge, where they hear
    // each other and nobody else (the hub, on the first bridge, stays with the rest); rejoin()
    // puts them back. Their connections across the split hang, as across a failed link.
    void split(const std::vector<int>& side) {
        if (!second_bridge_) {
            run("ip netns exec {} ip link add br1 type bridge", hub());
            run("ip netns exec {} ip link set br1 up", hub());
            second_bridge_ = true;
        }
        for (int i : side) run("ip netns exec {} ip link set vh{} master br1", hub(), i);
    }
    void rejoin(const std::vector<int>& side) {
        for (int i : side) run("ip netns exec {} ip link set vh{} master br0", hub(), i);
    }

private:
    template <class... A>
    static void run(fmt::format_string<A...> f, A&&... a) {
        auto cmd = fmt::format(f, std::forward<A>(a)...);
        if (std::system((cmd + " 2>&1").c_str()) != 0) throw std::runtime_error("test network: failed: " + cmd);
    }

    void remove() noexcept {
        for (int i = 0; i < peers_; ++i) {
            [[maybe_unused]] int r = std::system(fmt::format("ip netns del {} 2>/dev/null", ns(i)).c_str());
        }
        [[maybe_unused]] int r = std::system(fmt::format("ip netns del {} 2>/dev/null", hub()).c_str());
    }

    int peers_;
    bool second_bridge_ = false;
    std::string tag_;
    std::string subnet_;
    dhtkit::net::unique_fd home_;
};

}  // namespace test
