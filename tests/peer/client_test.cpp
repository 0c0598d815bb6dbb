// The client's read-your-writes, against two holders played by the test: an answer older than
// the client's own acknowledged write of the key (a holder that excused a busy grantor and missed
// the write) is never returned; the other holder is asked, and without a fresh one the answer is
// unavailable. A delete newer than the client's own put is no older: it is returned.
#include <catch2/catch.hpp>

#include <dhtkit/peer/client.hpp>

#include <poll.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

using namespace dhtkit;
using namespace dhtkit::protocol;
using namespace std::chrono_literals;

namespace {

// A holder played by the test: acknowledges every put and del (remembering the version it
// carried) and answers gets as `answer` says, given the version of the last write it took.
class fake_holder {
public:
    using answer_fn = std::function<std::pair<status, std::string>(const dhtkit::version& last_write)>;

    fake_holder() : listener_(net::tcp_listener::bind(net::endpoint::parse("127.0.0.1:0"))) {
        thread_ = std::thread([this] { serve(); });
    }
    ~fake_holder() {
        stop_ = true;
        thread_.join();
    }
    [[nodiscard]] std::uint16_t port() const { return listener_.local().port(); }
    void answer_with(answer_fn f) {
        std::lock_guard lock(mutex_);
        answer_ = std::move(f);
    }
    [[nodiscard]] dhtkit::version last_write() {
        std::lock_guard lock(mutex_);
        return last_write_;
    }
    // The next `n` puts are answered `unavailable` (a holder that does not know yet whether the
    // others are up), and not taken.
    void refuse_puts(int n) {
        std::lock_guard lock(mutex_);
        refuse_puts_ = n;
    }
    [[nodiscard]] int puts_seen() {
        std::lock_guard lock(mutex_);
        return puts_seen_;
    }

private:
    void serve() {
        while (!stop_) {
            pollfd ready{listener_.fd(), POLLIN, 0};
            if (::poll(&ready, 1, 50) != 1) continue;
            auto s = listener_.try_accept();
            if (!s) continue;
            rpc_stream rpc(std::move(*s), frame_limits(1024, 1 << 20));
            frame_view f;
            while (!stop_) {
                const auto got = rpc.receive(f, 50ms);
                if (got == rpc_status::timed_out) continue;
                if (got != rpc_status::ok) break;
                header reply{f.h.op, 0, status::ok, f.h.request_id, 0, 0};
                std::string value;
                if (f.h.op == opcode::put || f.h.op == opcode::del) {
                    std::lock_guard lock(mutex_);
                    if (f.h.op == opcode::put) ++puts_seen_;
                    if (f.h.op == opcode::put && refuse_puts_ > 0) {
                        --refuse_puts_;
                        reply.code = status::unavailable;
                    } else if (auto v = read_version(f.value)) {
                        last_write_ = *v;
                    }
                } else if (f.h.op == opcode::get) {
                    std::lock_guard lock(mutex_);
                    std::tie(reply.code, value) = answer_(last_write_);
                    if (value.size() >= version_size) reply.flags = flag_stamped;
                }
                if (rpc.send(reply, {}, value, 1s) != rpc_status::ok) break;
            }
        }
    }

    net::tcp_listener listener_;
    std::mutex mutex_;
    answer_fn answer_;            // guarded by mutex_
    dhtkit::version last_write_{};  // guarded by mutex_
    int refuse_puts_ = 0;           // guarded by mutex_
    int puts_seen_ = 0;             // guarded by mutex_
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

std::string stamped(const dhtkit::version& v, std::string_view value) {
    std::string out;
    append_version(out, v);
    out += value;
    return out;
}
dhtkit::version older(dhtkit::version v) {
    --v.stamp;
    return v;
}
dhtkit::version newer(dhtkit::version v) {
    ++v.stamp;
    return v;
}

}  // namespace

TEST_CASE("a client never reads back less than its own acknowledged write: it asks the next holder, else unavailable") {
    fake_holder home, backup;
    auto view = std::make_shared<cluster_view>(make_cluster_map(
        static_backup(1), 1,
        {{1, "127.0.0.1", home.port(), node_state::member}, {2, "127.0.0.1", backup.port(), node_state::member}}));
    client c(view, limits_settings{});
    std::string key;
    for (int i = 0; key.empty() || c.holders(key).front() != 1; ++i) key = fmt::format("k{}", i);

    REQUIRE(c.put(key, "new").ok());
    const auto mine = home.last_write();
    REQUIRE(mine.stamp != 0);
    // The home answers with an older value (it missed the write), the backup with the write.
    home.answer_with([](const dhtkit::version& v) { return std::pair{status::ok, stamped(older(v), "old")}; });
    backup.answer_with([&](const dhtkit::version&) { return std::pair{status::ok, stamped(mine, "new")}; });
    auto r = c.get(key);
    CHECK(r.ok());
    CHECK(r.value == "new");

    // Neither has it: unavailable, never the old value; nor a holder that has no entry at all.
    backup.answer_with([](const dhtkit::version&) { return std::pair{status::not_found, std::string()}; });
    r = c.get(key);
    CHECK(r.code == status::unavailable);
    CHECK(r.value.empty());

    // A delete newer than the client's put (another client's) is the answer, not a stale one.
    home.answer_with([&](const dhtkit::version&) { return std::pair{status::not_found, stamped(newer(mine), "")}; });
    r = c.get(key);
    CHECK(r.code == status::not_found);

    // After its own delete, a holder with no entry, or with the tombstone, is as new as it.
    REQUIRE(c.del(key).code != status::unavailable);
    home.answer_with([](const dhtkit::version&) { return std::pair{status::not_found, std::string()}; });
    CHECK(c.get(key).code == status::not_found);
    // ... and one that still has the put is older: the backup's tombstone answers.
    home.answer_with([&](const dhtkit::version&) { return std::pair{status::ok, stamped(mine, "new")}; });
    const auto deleted = home.last_write();
    backup.answer_with([&](const dhtkit::version&) { return std::pair{status::not_found, stamped(deleted, "")}; });
    CHECK(c.get(key).code == status::not_found);

    // Keys it did not write are read as they come.
    std::string other;
    for (int i = 0; other.empty() || other == key || c.holders(other).front() != 1; ++i) other = fmt::format("o{}", i);
    home.answer_with([](const dhtkit::version&) { return std::pair{status::ok, stamped({5, 5, 5}, "theirs")}; });
    CHECK(c.get(other).value == "theirs");
}

TEST_CASE("a write that every holder answers `unavailable` for a moment is asked again until it is taken, within the timeout") {
    fake_holder home, backup;
    auto view = std::make_shared<cluster_view>(make_cluster_map(
        static_backup(1), 1,
        {{1, "127.0.0.1", home.port(), node_state::member}, {2, "127.0.0.1", backup.port(), node_state::member}}));
    std::string key;
    {
        client c(view, limits_settings{}, client_options{.request_timeout = 2000ms});
        for (int i = 0; key.empty() || c.holders(key).front() != 1; ++i) key = fmt::format("k{}", i);
        // A holder died a moment ago: the others refuse writes until they know it is gone.
        home.refuse_puts(2);
        backup.refuse_puts(2);
        auto r = c.put(key, "v");
        CHECK(r.ok());
        CHECK(home.puts_seen() == 3);  // refused twice, then taken: the same stamped write each time
        CHECK(backup.puts_seen() == 2);
        CHECK(home.last_write().stamp != 0);
    }  // the test's holders serve one connection at a time

    // Holders that go on refusing: the answer is theirs, once the timeout is spent.
    home.refuse_puts(1000);
    backup.refuse_puts(1000);
    client quick(view, limits_settings{}, client_options{.request_timeout = 300ms});
    const auto before = home.puts_seen();
    auto r = quick.put(key, "w");
    CHECK(r.code == status::unavailable);
    CHECK(home.puts_seen() - before > 1);
}
