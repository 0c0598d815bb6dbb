// table_memory: resident bytes per entry after preloading each contender with the table_bench
// workload (DHTKIT_BENCH_KEYS keys of 16 bytes, 100-byte values). Each contender is measured in a
// fresh child process, so one's freed memory cannot flatter the next.

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>

#include "table_contenders.hpp"

namespace {

long resident_bytes() {
    std::ifstream statm("/proc/self/statm");
    long pages = 0, resident = 0;
    statm >> pages >> resident;
    return resident * ::sysconf(_SC_PAGESIZE);
}

template <class Table>
void measure() {
    std::fflush(stdout);
    pid_t child = ::fork();
    if (child == 0) {
        const std::size_t n = bench::key_count();
        long before = resident_bytes();
        auto table = std::make_unique<Table>();
        bench::preload(*table, n);
        long after = resident_bytes();
        std::printf("%-18s %8.1f bytes/entry  (%zu entries, %.1f MiB)\n", Table::name,
                    static_cast<double>(after - before) / static_cast<double>(n), n,
                    static_cast<double>(after - before) / (1 << 20));
        std::fflush(stdout);
        ::_exit(0);
    }
    int status = 0;
    ::waitpid(child, &status, 0);
}

}  // namespace

int main() {
    measure<bench::dhtkit_table>();
#ifdef DHTKIT_HAVE_LIBCUCKOO
    measure<bench::libcuckoo_table>();
#endif
#ifdef DHTKIT_HAVE_TBB
    measure<bench::tbb_table>();
#endif
    measure<bench::std_mutex_table>();
    return 0;
}
