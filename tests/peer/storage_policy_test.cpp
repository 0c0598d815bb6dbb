// Storage as a template policy of the peer: a storage written in this test — it keeps records in
// a journal of the test's own and holds every append until the test says whether it was kept —
// composed into a peer. A write is acknowledged only once its storage kept it, is refused when
// storage could not, and what storage kept comes back through open() when the peer starts again.
#include <catch2/catch.hpp>

#include <dhtkit/peer/peer.hpp>
#include <dhtkit/store/storage.hpp>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <future>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "in_process_cluster.hpp"

using namespace dhtkit;
using namespace std::chrono_literals;

namespace {

// What every gated_storage shares: the peer makes its storage itself, from its data folder and
// settings, so the test reaches it here.
struct journal {
    struct waiting {
        std::string key, record;
        kept_fn done;
    };
    std::mutex mutex;
    std::condition_variable changed;
    std::vector<std::pair<std::string, std::string>> kept;  // guarded by mutex
    std::vector<waiting> held;                               // guarded by mutex: appends not yet answered
    bool fail_all = false;                                   // guarded by mutex: answer every append "not kept"
    int opened = 0;                                          // guarded by mutex
    int replayed = 0;                                        // guarded by mutex

    // Answers the appends held now: kept (or not).
    void release(bool keep) {
        std::vector<waiting> now;
        {
            std::lock_guard lock(mutex);
            now.swap(held);
            if (keep)
                for (const auto& w : now) kept.emplace_back(w.key, w.record);
        }
        for (auto& w : now) w.done(keep);
    }
    bool wait_held(std::size_t n, std::chrono::milliseconds limit) {
        std::unique_lock lock(mutex);
        return changed.wait_for(lock, limit, [&] { return held.size() >= n; });
    }
    void reset() {
        std::lock_guard lock(mutex);
        kept.clear();
        held.clear();
        fail_all = false;
        opened = replayed = 0;
    }
};

journal the_journal;

class gated_storage {
public:
    gated_storage(const std::filesystem::path&, const storage_settings&) {}
    void open(const replay_fn& apply, const snapshot_source&) {
        std::vector<std::pair<std::string, std::string>> kept;
        {
            std::lock_guard lock(the_journal.mutex);
            ++the_journal.opened;
            kept = the_journal.kept;
            the_journal.replayed += static_cast<int>(kept.size());
        }
        for (const auto& [key, record] : kept) apply(key, record);
    }
    [[nodiscard]] bool keeps() const noexcept { return true; }
    void append(std::string_view key, std::string_view record, kept_fn done) {
        {
            std::lock_guard lock(the_journal.mutex);
            if (!the_journal.fail_all) {
                the_journal.held.push_back({std::string(key), std::string(record), std::move(done)});
                the_journal.changed.notify_all();
                return;
            }
        }
        if (done) done(false);
    }
    void stop() { the_journal.release(false); }  // nothing is kept after stop
    [[nodiscard]] const log_recovery* recovery() const noexcept { return nullptr; }
    [[nodiscard]] storage_figures report() const { return {"gated"}; }
};
static_assert(storage_policy<gated_storage>);

using gated_cluster = test::in_process_cluster<static_backup, locked_table<std::string, std::string>, gated_storage>;

}  // namespace

TEST_CASE("a peer's storage is a policy: a write is acknowledged once its storage kept it, and comes back from it") {
    the_journal.reset();
    {
        gated_cluster cluster(1);
        {
            std::lock_guard lock(the_journal.mutex);
            CHECK(the_journal.opened == 1);  // open() ran before the peer served
        }
        auto c = cluster.client();
        auto put = std::async(std::launch::async, [&] { return c.put("kept-key", "kept-value"); });
        REQUIRE(the_journal.wait_held(1, 5s));
        // Held in storage: no acknowledgement yet, however long storage takes.
        CHECK(put.wait_for(300ms) == std::future_status::timeout);
        the_journal.release(true);
        const auto acked = put.get();
        CHECK(acked.ok());
        {
            std::lock_guard lock(the_journal.mutex);
            REQUIRE(the_journal.kept.size() == 1);
            CHECK(the_journal.kept.front().first == "kept-key");
        }

        // Storage that cannot keep a write: not acknowledged (the client asks again until its timeout).
        {
            std::lock_guard lock(the_journal.mutex);
            the_journal.fail_all = true;
        }
        const auto refused = c.put("lost-key", "v");
        CHECK_FALSE(refused.ok());
        INFO(refused.error);
        CHECK(refused.code == protocol::status::unavailable);
    }
    // The process again, its table empty: what storage kept is replayed before it serves.
    {
        std::lock_guard lock(the_journal.mutex);
        the_journal.fail_all = false;
    }
    gated_cluster again(1);
    {
        std::lock_guard lock(the_journal.mutex);
        CHECK(the_journal.replayed == 1);
    }
    auto c = again.client();
    const auto got = c.get("kept-key");
    REQUIRE(got.ok());
    CHECK(got.value == "kept-value");
    CHECK(c.get("lost-key").code == protocol::status::not_found);
}
