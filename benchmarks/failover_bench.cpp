// failover_bench: how long a key is unreadable when its home peer dies. Starts a 3-peer cluster
// (R = 2), reads one key in a loop, kills its home peer, and times from the signal to the first
// successful read; then the same for a peer that hangs (SIGSTOP) instead of dying, where the
// client has to wait out its timeout. Prints the median and the spread over --rounds rounds.
//
//   build/benchmarks/failover_bench [--rounds 5]

#include "local_cluster.hpp"

#include <algorithm>
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
    std::vector<double> crash, hang;
    for (int r = 0; r < rounds; ++r) time_to_read(r, SIGKILL, crash);
    for (int r = 0; r < rounds; ++r) time_to_read(r, SIGSTOP, hang);
    std::printf("failover, home killed (kill -9):  %s\n", summary(crash).c_str());
    std::printf("failover, home hung (SIGSTOP):    %s\n", summary(hang).c_str());
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "failover_bench: %s\n", e.what());
    return 1;
}
