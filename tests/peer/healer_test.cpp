// The healer on a sync service of the test's own: each map's work in order, one at a time;
// anti-entropy passes on its period, and sooner while slots are unconfirmed; stop() returns once
// the job in hand is done.
#include <catch2/catch.hpp>

#include <dhtkit/peer/healer.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

using namespace dhtkit;
using namespace std::chrono_literals;

namespace {

struct recording_sync {
    std::mutex mutex;
    std::condition_variable changed;
    std::vector<std::string> calls;  // guarded by mutex
    std::atomic<std::size_t> unconfirmed_slots{0};

    void catch_up_gained(const gained_slots& g, const std::function<void(const std::string&)>&) {
        note("gained " + std::to_string(g.front().first.first));
    }
    void repair(const std::function<void(const std::string&)>&, std::optional<node_id> back = std::nullopt) {
        note(back ? "back " + std::to_string(*back) : std::string("pass"));
    }
    [[nodiscard]] std::size_t unconfirmed() const noexcept { return unconfirmed_slots.load(); }

    void note(std::string what) {
        std::lock_guard lock(mutex);
        calls.push_back(std::move(what));
        changed.notify_all();
    }
    // Waits (5 s at most) until `n` calls were made; the calls so far.
    std::vector<std::string> wait_for(std::size_t n) {
        std::unique_lock lock(mutex);
        changed.wait_for(lock, 5s, [&] { return calls.size() >= n; });
        return calls;
    }
};

}  // namespace

TEST_CASE("the healer does each map's work in order: gained slots, then members back, then files") {
    recording_sync sync;
    std::atomic<int> recopies{0};
    healer<recording_sync> h(sync, [&] { recopies++; sync.note("recopy"); }, {}, std::chrono::seconds(0), [](const std::string&) {});
    h.start();
    h.push({{{{10, 20}, {}}}, false, {}});
    h.push({{{{30, 30}, {}}}, true, {7, 8}});
    const auto calls = sync.wait_for(5);
    h.stop();
    CHECK(calls == std::vector<std::string>{"gained 10", "gained 30", "back 7", "back 8", "recopy"});
    CHECK(recopies == 1);
}

TEST_CASE("anti-entropy passes come every period, and after 1 s while slots are unconfirmed") {
    recording_sync sync;
    sync.unconfirmed_slots = 3;  // served without a complete copy: compared again soon
    std::atomic<int> notes{0};
    healer<recording_sync> h(sync, {}, [&] { notes++; }, std::chrono::seconds(60), [](const std::string&) {});
    h.start();
    const auto calls = sync.wait_for(1);  // within 5 s: not the 60 s period
    h.stop();
    REQUIRE(calls.size() >= 1);
    CHECK(calls.front() == "pass");
    CHECK(notes >= 1);  // the confirmed moment is noted at once
}

TEST_CASE("a healer stopped before it started, or twice, returns") {
    recording_sync sync;
    healer<recording_sync> h(sync, {}, {}, std::chrono::seconds(1), [](const std::string&) {});
    h.stop();
    h.stop();
    CHECK(sync.calls.empty());
}
