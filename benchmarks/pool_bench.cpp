// pool_bench: tiny tasks through 2 workers (tasks/s) and a submit -> future round trip (ns).
// Contenders: dhtkit (thread_pool), asio (boost::asio::thread_pool), naive (one mutex, one
// condition variable, a deque of std::function, a notify per task). Names read
// BM_pool_<workload>/<contender>.

#include <benchmark/benchmark.h>

#include <dhtkit/concurrency/thread_pool.hpp>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#ifdef DHTKIT_HAVE_ASIO
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#endif

namespace {

constexpr std::size_t workers = 2;
constexpr std::int64_t tiny_tasks = 1'000'000;

class naive_pool {
public:
    explicit naive_pool(std::size_t n) {
        for (std::size_t i = 0; i < n; ++i) threads_.emplace_back([this] { work(); });
    }
    ~naive_pool() {
        {
            std::lock_guard g(mutex_);
            stopping_ = true;
        }
        cv_.notify_all();
        for (auto& t : threads_) t.join();
    }
    void post(std::function<void()> f) {
        {
            std::lock_guard g(mutex_);
            queue_.push_back(std::move(f));
        }
        cv_.notify_one();
    }

private:
    void work() {
        for (;;) {
            std::function<void()> f;
            {
                std::unique_lock l(mutex_);
                cv_.wait(l, [&] { return stopping_ || !queue_.empty(); });
                if (queue_.empty()) return;
                f = std::move(queue_.front());
                queue_.pop_front();
            }
            f();
        }
    }
    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<std::function<void()>> queue_;
    bool stopping_ = false;
    std::vector<std::thread> threads_;
};

struct dhtkit_contender {
    dhtkit::thread_pool pool{workers};
    template <class F> void post(F&& f) { pool.post(std::forward<F>(f)); }
};
struct naive_contender {
    naive_pool pool{workers};
    template <class F> void post(F&& f) { pool.post(std::forward<F>(f)); }
};
#ifdef DHTKIT_HAVE_ASIO
struct asio_contender {
    boost::asio::thread_pool pool{workers};
    template <class F> void post(F&& f) { boost::asio::post(pool, std::forward<F>(f)); }
};
#endif

template <class Contender>
void tiny_task_throughput(benchmark::State& state) {
    Contender c;
    std::atomic<std::int64_t> done{0};
    for (auto _ : state) {
        done.store(0, std::memory_order_relaxed);
        for (std::int64_t i = 0; i < tiny_tasks; ++i)
            c.post([&done] { done.fetch_add(1, std::memory_order_relaxed); });
        while (done.load(std::memory_order_acquire) != tiny_tasks) std::this_thread::yield();
    }
    state.SetItemsProcessed(state.iterations() * tiny_tasks);
}

template <class Contender>
void round_trip(benchmark::State& state) {
    Contender c;
    for (auto _ : state) {
        std::promise<int> p;
        auto f = p.get_future();
        c.post([&p] { p.set_value(1); });
        benchmark::DoNotOptimize(f.get());
    }
}

// Our own door for the round trip: submit() and its future.
void round_trip_dhtkit_submit(benchmark::State& state) {
    dhtkit::thread_pool pool(workers);
    for (auto _ : state) benchmark::DoNotOptimize(pool.submit([] { return 1; }).get());
}

}  // namespace

BENCHMARK_TEMPLATE(tiny_task_throughput, dhtkit_contender)->Name("BM_pool_tiny_tasks/dhtkit")->Unit(benchmark::kMillisecond)->UseRealTime();
#ifdef DHTKIT_HAVE_ASIO
BENCHMARK_TEMPLATE(tiny_task_throughput, asio_contender)->Name("BM_pool_tiny_tasks/asio")->Unit(benchmark::kMillisecond)->UseRealTime();
#endif
BENCHMARK_TEMPLATE(tiny_task_throughput, naive_contender)->Name("BM_pool_tiny_tasks/naive")->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_TEMPLATE(round_trip, dhtkit_contender)->Name("BM_pool_round_trip/dhtkit")->UseRealTime();
BENCHMARK(round_trip_dhtkit_submit)->Name("BM_pool_round_trip/dhtkit_submit")->UseRealTime();
#ifdef DHTKIT_HAVE_ASIO
BENCHMARK_TEMPLATE(round_trip, asio_contender)->Name("BM_pool_round_trip/asio")->UseRealTime();
#endif
BENCHMARK_TEMPLATE(round_trip, naive_contender)->Name("BM_pool_round_trip/naive")->UseRealTime();
