// failover_bench: how long a key is unreadable when its home peer dies. Starts a 3-peer cluster
// (R = 2), reads one key in a loop, kills its home peer, and times from the signal to the first
// successful read; then the same for a peer that hangs (SIGSTOP) instead of dying, where the
// client has to wait out its timeout; then, with supervised peers, from kill -9 of a worker to
// the first read its replacement answers. Prints the median and the spread over --rounds rounds.
//
//   build/benchmarks/failover_bench [--rounds 5]

#include "local_cluster.hpp"

#include <algorithm>
#include <thread>
#include <cstdio>
#include <cstring>
#include <vector>

using namespace std::chrono;

namespace {

double time_to_read(int rounds_left, int sig, std::vector<double>& out) {
    test::local_cluster cluster;
    cluster.start_all();
    auto c = cluster.client(milliseconds(800));
    const std::string key = fmt::format("failover-{}", rounds_left);
    if (!c.put(key, "v").ok()) throw std::runtime_error("put failed");
    auto victim = static_cast<int>(c.holders(key)[0]);
    for (int i = 0; i < 100; ++i)
        if (!c.get(key).ok()) throw std::runtime_error("get failed before the kill");
    auto t0 = steady_clock::now();
    cluster.kill(victim, sig);
    if (sig == SIGSTOP && !cluster.wait_stopped(victim)) throw std::runtime_error("the peer did not stop");
    for (int i = 0; i < 100000; ++i) {
        if (c.get(key).ok()) {
            out.push_back(duration<double, std::milli>(steady_clock::now() - t0).count());
            if (sig == SIGSTOP) cluster.kill(victim, SIGCONT);
            return out.back();
        }
    }
    throw std::runtime_error("no read succeeded after the kill");
}

// Supervised peers: kill -9 of a worker, time until the peer itself (its new worker, caught up)
// answers a read again.
double time_to_restart(std::vector<double>& out) {
    test::local_cluster cluster({.supervised = true});
    cluster.start_all();
    auto c = cluster.client(milliseconds(800));
    if (!c.put("restart-key", "v").ok()) throw std::runtime_error("put failed");
    auto victim = c.holders("restart-key")[0];
    auto pid = test::stat_value(c, victim, "pid");
    if (pid.empty()) throw std::runtime_error("no pid in the stats");
    pid_t worker = std::stoi(pid);
    auto t0 = steady_clock::now();
    ::kill(worker, SIGKILL);
    for (int i = 0; i < 20000; ++i) {
        auto r = c.call(victim, dhtkit::protocol::opcode::get, "restart-key");
        if (r.ok() && r.value == "v") {
            out.push_back(duration<double, std::milli>(steady_clock::now() - t0).count());
            return out.back();
        }
        std::this_thread::sleep_for(milliseconds(1));
    }
    throw std::runtime_error("the peer did not serve again");
}

std::string summary(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return fmt::format("median {:.2f} ms (min {:.2f}, max {:.2f}, {} rounds)", v[v.size() / 2], v.front(), v.back(),
                       v.size());
}

}  // namespace

int main(int argc, char** argv) try {
    int rounds = 5;
    for (int i = 1; i + 1 < argc; ++i)
        if (std::strcmp(argv[i], "--rounds") == 0) rounds = std::max(1, std::atoi(argv[i + 1]));
    std::vector<double> crash, hang, restart;
    for (int r = 0; r < rounds; ++r) time_to_read(r, SIGKILL, crash);
    for (int r = 0; r < rounds; ++r) time_to_read(r, SIGSTOP, hang);
    for (int r = 0; r < rounds; ++r) time_to_restart(restart);
    std::printf("failover, home killed (kill -9):  %s\n", summary(crash).c_str());
    std::printf("failover, home hung (SIGSTOP):    %s\n", summary(hang).c_str());
    std::printf("worker killed, new worker serves: %s\n", summary(restart).c_str());
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "failover_bench: %s\n", e.what());
    return 1;
}
