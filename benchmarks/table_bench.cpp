// table_bench: preloaded tables (16-byte keys, 100-byte values), uniformly random keys, a mix of
// gets and overwriting puts, 1 and 2 threads. Names read BM_table/<contender>/<mix>/threads:N so a
// script can pair contenders within one run. DHTKIT_BENCH_KEYS sets the preload (default 1e6).

#include <benchmark/benchmark.h>

#include <memory>

#include "table_contenders.hpp"

namespace {

template <class Table>
Table& shared_table() {
    // Built once per contender and kept for every mix and thread count.
    static std::unique_ptr<Table> table = [] {
        auto t = std::make_unique<Table>();
        bench::preload(*t, bench::key_count());
        return t;
    }();
    return *table;
}

template <class Table>
void run_mix(benchmark::State& state, unsigned read_percent) {
    Table& table = shared_table<Table>();
    const std::size_t n = bench::key_count();
    bench::fast_random rng{0x9E3779B97F4A7C15ull * (static_cast<std::uint64_t>(state.thread_index()) + 1)};
    std::string key, out;
    const std::string value = bench::make_value(static_cast<char>('a' + state.thread_index()));
    std::size_t misses = 0;
    for (auto _ : state) {
        const std::uint64_t r = rng.next();
        bench::make_key((r >> 8) % n, key);
        if (((r & 0xffff) * 100 >> 16) < read_percent) {
            misses += !table.get(key, out);
            benchmark::DoNotOptimize(out.data());
        } else {
            table.put(key, value);
        }
    }
    if (misses != 0) state.SkipWithError("a preloaded key was missing");
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

template <class Table>
void register_contender() {
    for (unsigned read : {90u, 50u}) {
        auto name = std::string("BM_table/") + Table::name + "/read" + std::to_string(read);
        benchmark::RegisterBenchmark(name.c_str(), [read](benchmark::State& s) { run_mix<Table>(s, read); })
            ->Threads(1)
            ->Threads(2)
            ->UseRealTime();
    }
}

const bool registered = [] {
    register_contender<bench::dhtkit_table>();
#ifdef DHTKIT_HAVE_LIBCUCKOO
    register_contender<bench::libcuckoo_table>();
#else
    std::fprintf(stderr, "table_bench: built without libcuckoo, that baseline is left out\n");
#endif
#ifdef DHTKIT_HAVE_TBB
    register_contender<bench::tbb_table>();
#else
    std::fprintf(stderr, "table_bench: built without TBB, that baseline is left out\n");
#endif
    register_contender<bench::std_mutex_table>();
    register_contender<bench::seed_table>();
    return true;
}();

}  // namespace
