#pragma once
// One replica link: the connection and thread that carry copies of writes from this node to one
// other node (cluster/replicator.hpp keeps one per node of the map that it copies to).
//
// Writers never block: send() appends a replicate frame to the link's outbox and returns; the
// link's thread sends all that piled up since its last send in one write and matches the
// acknowledgements, which come back in order, as they arrive. A replica that cannot be reached
// (refused, reset, no ack within ack_timeout) is marked down for a while; the keys it missed are
// remembered (hinted handoff) and re-sent, as their current records, once it answers again. A
// copy that was not delivered is reported as such as soon as that is known — except that a
// replica which may still hold a read lease from this node (cluster/leases.hpp) is given until
// that lease has run out, and one whose process is gone (its port refuses connections) is not
// waited for at all.
//
// The same pipeline carries majority reads (ask()): a get or search for the replica's own record
// of a key, answered in order with the copies. A read is never re-sent or hinted: it fails.

#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include "dhtkit/cluster/cluster_map.hpp"
#include "dhtkit/cluster/handshake.hpp"
#include "dhtkit/cluster/in_flight.hpp"
#include "dhtkit/cluster/leases.hpp"
#include "dhtkit/cluster/missed_copies.hpp"
#include "dhtkit/net/wakeup.hpp"
#include "dhtkit/protocol/messages.hpp"
#include "dhtkit/protocol/rpc.hpp"

namespace dhtkit {

class replica_link {
public:
    replica_link(node to, protocol::limits lim, record_source source, protocol::hello_request hello,
                 replicator_options opt, replication_counters& counters, lease_grants* grants = nullptr,
                 const lease_holdings* held = nullptr)
        : to_(std::move(to)), limits_(lim), source_(std::move(source)), hello_(std::move(hello)), options_(opt),
          counters_(counters), grants_(grants), held_(held),
          missed_(options_, counters), in_flight_(counters) {
        thread_ = std::thread([this] { run(); });
    }
    replica_link(const replica_link&) = delete;
    replica_link& operator=(const replica_link&) = delete;
    ~replica_link() { stop(); }

    void send(protocol::table_id t, std::string_view key, std::string_view record, ack_fn done) {
        std::string hint = missed_copies::hint_key(t, key);
        {
            std::lock_guard lock(mutex_);
            // A replica that may still hold a lease from here is not skipped: its copy waits in
            // the queue, and fails (if it does) once the lease is over. Nor is one that grants
            // this node leases: it answers, whatever this link last saw (this process may have
            // been the one paused).
            if (!stopping_ && (!missed_.skipping(clock::now()) || lease_may_be_held() || (held_ && held_->valid(to_.id)))) {
                bool was_idle = outbox_.empty();
                std::uint64_t id = ++next_id_;
                protocol::append_frame(outbox_, {protocol::opcode::replicate, 0, protocol::status::ok, id, 0, 0}, key,
                                       record);
                queued_.push_back({id, std::move(done), {}, std::move(hint), {}});
                counters_.sent.fetch_add(1, std::memory_order_relaxed);
                if (was_idle) wake();
                return;
            }
            missed_.add(std::move(hint));
        }
        counters_.missed.fetch_add(1, std::memory_order_relaxed);
        if (done) done(false);
    }

    // Asks the replica for its own record of `key` (op: get or search). `answer` is called once:
    // (true, record) — the record is empty when it has none — or (false, {}) when it could not say.
    void ask(protocol::opcode op, std::string_view key, read_fn answer) {
        {
            std::lock_guard lock(mutex_);
            if (!stopping_ && !missed_.skipping(clock::now())) {
                bool was_idle = outbox_.empty();
                std::uint64_t id = ++next_id_;
                protocol::append_frame(outbox_, {op, protocol::flag_own_copy, protocol::status::ok, id, 0, 0}, key, {});
                queued_.push_back({id, {}, std::move(answer), std::string(key), {}, op});
                if (was_idle) wake();
                return;
            }
        }
        answer(false, {});
    }

    // Waits (up to the ack timeout) for the copies under way, then fails what is left.
    void stop() {
        {
            std::lock_guard lock(mutex_);
            if (stopping_) return;
            stopping_ = true;
        }
        wake();
        thread_.join();
    }

    // The replica says it is up again: stop skipping it, and re-send what it missed now.
    void peer_is_up() {
        {
            std::lock_guard lock(mutex_);
            missed_.mark_up();
        }
        wake();
    }

    [[nodiscard]] const node& target() const noexcept { return to_; }
    [[nodiscard]] std::size_t hints() const {
        std::lock_guard lock(mutex_);
        return missed_.size();
    }

private:
    using clock = std::chrono::steady_clock;

    // With mutex_ held. Marks the replica as behind (it missed a copy) and says whether the last
    // lease granted to it may still run.
    bool lease_may_be_held() { return grants_ && clock::now() < grants_->missed(to_.id); }

    void wake() noexcept { wake_.notify(); }

    // --- the link's thread --------------------------------------------------------------------

    void run() {
        for (;;) {
            bool stopping = take_queued();
            if (stopping && in_flight_.empty()) break;
            if (!rpc_.valid() && !in_flight_.empty() && !connect()) fail_all();
            if (rpc_.valid()) replay_hints();
            if (stopping && stop_deadline_ == clock::time_point{}) stop_deadline_ = clock::now() + options_.ack_timeout;
            if (stopping && clock::now() >= stop_deadline_) break;
            wait_and_transfer();
            if (!in_flight_.empty() && clock::now() >= in_flight_.next_deadline()) fail_connection(false);
            if (!rpc_.valid() && want_retry()) {
                if (connect()) replay_hints();
            }
        }
        drop_connection();
        in_flight_.fail_all();
    }

    // Moves what writers queued into this thread's hands. True once stop() was called.
    bool take_queued() {
        std::lock_guard lock(mutex_);
        if (!outbox_.empty()) {
            if (rpc_.valid()) {
                rpc_.queue_frames(outbox_);
            } else {
                // Frames written for a connection that failed: resent from the keys once connected.
                resend_ = true;
            }
            outbox_.clear();
        }
        auto deadline = clock::now() + options_.ack_timeout;
        for (auto& r : queued_) {
            r.deadline = deadline;
            in_flight_.push(std::move(r));
        }
        queued_.clear();
        return stopping_;
    }

    bool want_retry() {
        std::lock_guard lock(mutex_);
        return !stopping_ && missed_.want_retry(clock::now());
    }

    bool connect() {
        try {
            rpc_ = protocol::rpc_stream::connect(to_.host, to_.port, limits_, options_.connect_timeout);
            // A replica that follows another map is as good as down: copies there are missed.
            if (!say_hello(rpc_, hello_, options_.ack_timeout).agreed()) throw std::runtime_error("hello refused");
        } catch (const std::exception& e) {
            // Refused: nothing listens on its port, so the process that held leases is gone.
            const auto* failed = dynamic_cast<const std::system_error*>(&e);
            gone_ = failed && failed->code().value() == ECONNREFUSED;
            rpc_.close();
            std::lock_guard lock(mutex_);
            missed_.mark_down();
            return false;
        }
        gone_ = false;
        {
            std::lock_guard lock(mutex_);
            missed_.mark_up();
        }
        if (resend_) resend_in_flight();
        return true;
    }

    // After a reconnect: the copies in flight are sent again, as the keys' current records.
    void resend_in_flight() {
        resend_ = false;
        auto deadline = clock::now() + options_.ack_timeout;
        in_flight_.resend([&](link_request& r) { return r.read() ? queue_read(r, deadline) : queue_current(r, deadline); });
    }

    // Queues a replicate frame with c's key's current record, under a new id; false when the key
    // has no record here any more.
    bool queue_current(link_request& c, clock::time_point deadline) {
        auto key = std::string_view(c.hint).substr(1);
        auto rec = source_(static_cast<protocol::table_id>(c.hint[0]), key);
        if (!rec) return false;
        {
            std::lock_guard lock(mutex_);
            c.id = ++next_id_;
        }
        rpc_.queue_request({protocol::opcode::replicate, 0, protocol::status::ok, c.id, 0, 0}, key, *rec);
        c.deadline = deadline;
        return true;
    }

    // Queues a read's frame again, under a new id (its bytes went with a failed connection).
    bool queue_read(link_request& c, clock::time_point deadline) {
        {
            std::lock_guard lock(mutex_);
            c.id = ++next_id_;
        }
        rpc_.queue_request({c.read_op, protocol::flag_own_copy, protocol::status::ok, c.id, 0, 0}, c.hint, {});
        c.deadline = deadline;
        return true;
    }

    // Re-sends, a batch at a time, the current records of keys this replica missed.
    void replay_hints() {
        if (in_flight_.size() > 1024) return;
        std::vector<std::string> batch;
        {
            std::lock_guard lock(mutex_);
            batch = missed_.take(512);
        }
        auto deadline = clock::now() + options_.ack_timeout;
        for (auto& h : batch) {
            link_request r{0, {}, {}, std::move(h), {}};
            if (!queue_current(r, deadline)) continue;
            counters_.replayed.fetch_add(1, std::memory_order_relaxed);
            in_flight_.push(std::move(r));
        }
    }

    void wait_and_transfer() {
        // Most rounds the socket has room: send before waiting rather than after.
        if (rpc_.valid() && rpc_.has_queued() && !rpc_.send_queued()) return fail_connection(true);
        pollfd fds[2] = {{wake_.fd(), POLLIN, 0}, {-1, 0, 0}};
        if (rpc_.valid()) fds[1] = {rpc_.stream().fd(), static_cast<short>(POLLIN | (rpc_.has_queued() ? POLLOUT : 0)), 0};
        int timeout = -1;
        auto now = clock::now();
        auto until = [&](clock::time_point t) {
            auto ms = std::chrono::ceil<std::chrono::milliseconds>(t - now).count();
            int v = static_cast<int>(std::max<long long>(ms, 0));
            timeout = timeout < 0 ? v : std::min(timeout, v);
        };
        if (!in_flight_.empty()) until(in_flight_.next_deadline());
        if (stop_deadline_ != clock::time_point{}) until(stop_deadline_);
        {
            std::lock_guard lock(mutex_);
            if (missed_.down() && !missed_.empty()) until(missed_.retry_at());
        }
        if (::poll(fds, 2, timeout) <= 0) return;
        if (fds[0].revents & POLLIN) wake_.drain();
        if (!rpc_.valid()) return;
        if ((fds[1].revents & POLLOUT) && !rpc_.send_queued()) return fail_connection(true);
        if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) receive_acks();
    }

    void receive_acks() {
        for (;;) {
            auto in = rpc_.receive_some();
            if (!in) return fail_connection(true);
            protocol::frame_view f;
            protocol::frame_reader::result r;
            while ((r = rpc_.next(f)) == protocol::frame_reader::result::frame)
                if (!in_flight_.answered(f)) return fail_connection(false);
            if (r == protocol::frame_reader::result::error) return fail_connection(false);
            if (in.bytes < 64 * 1024) return;
        }
    }

    // The connection broke or stalled. A connection that broke (the replica restarted, say) is
    // reopened at once and what was in flight is sent again; if that fails too, or it stalled,
    // the replica is down: its copies are reported missed and their keys hinted.
    void fail_connection(bool try_again) {
        drop_connection();
        if (in_flight_.empty()) return;  // an idle connection closed: reopened on the next copy
        if (try_again) {
            resend_ = true;
            if (connect()) return;
        }
        fail_all();
    }

    void fail_all() {
        drop_connection();
        resend_ = false;
        in_flight_.fail_reads();
        if (grants_) {
            // A write may count without this replica only once the lease it may hold from here
            // has run out; a process that is gone holds none. This thread waits, not the writer's.
            const auto lease_over = grants_->missed(to_.id);
            if (!gone_) std::this_thread::sleep_until(lease_over);
        }
        std::lock_guard lock(mutex_);
        if (!missed_.down()) missed_.mark_down();
        in_flight_.fail_copies([&](std::string hint) { missed_.add(std::move(hint)); });
    }

    void drop_connection() { rpc_.close(); }

    node to_;
    protocol::limits limits_;
    record_source source_;
    protocol::hello_request hello_;
    replicator_options options_;
    replication_counters& counters_;
    lease_grants* grants_;
    const lease_holdings* held_;
    net::wakeup wake_;

    mutable std::mutex mutex_;
    std::string outbox_;                     // guarded by mutex_
    std::deque<link_request> queued_;        // guarded by mutex_
    std::uint64_t next_id_ = 0;              // guarded by mutex_
    bool stopping_ = false;                  // guarded by mutex_
    missed_copies missed_;                   // guarded by mutex_

    // The link thread's own.
    protocol::rpc_stream rpc_;  // and the frames queued for it
    in_flight_requests in_flight_;
    bool resend_ = false;
    bool gone_ = false;  // the last connect was refused
    clock::time_point stop_deadline_{};

    std::thread thread_;
};

}  // namespace dhtkit
