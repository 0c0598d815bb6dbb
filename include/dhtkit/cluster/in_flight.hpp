#pragma once
// What a replica link (cluster/replica_link.hpp) has sent and not yet seen answered: copies of
// writes (replicate) and majority reads (a get or search for the replica's own record), in the
// order they were sent, each with the time by which its answer is due. A replica answers a
// connection's requests in that order, so a reply is always for the oldest one.
//
// Each request ends exactly once: a copy as applied or missed (its writer's ack_fn, and the
// counters), a read with the replica's answer or with "could not say" (its read_fn). The link's
// thread alone touches it.

#include <chrono>
#include <cstdint>
#include <deque>
#include <string_view>
#include <functional>
#include <string>
#include <utility>

#include "dhtkit/cluster/missed_copies.hpp"
#include "dhtkit/protocol/codec.hpp"

namespace dhtkit {

struct link_request {
    using clock = std::chrono::steady_clock;

    std::uint64_t id = 0;
    ack_fn done;       // a copy's, called once
    read_fn answer;    // a read's, called once
    std::string hint;  // a copy's table byte + key; a read's key
    clock::time_point deadline{};
    protocol::opcode read_op{};  // set for a read (get or search)

    [[nodiscard]] bool read() const noexcept { return read_op != protocol::opcode{}; }
};

class in_flight_requests {
public:
    using clock = link_request::clock;

    explicit in_flight_requests(replication_counters& counters) : counters_(counters) {}

    void push(link_request r) { requests_.push_back(std::move(r)); }
    [[nodiscard]] bool empty() const noexcept { return requests_.empty(); }
    [[nodiscard]] std::size_t size() const noexcept { return requests_.size(); }
    // When the oldest answer is due. Only when not empty.
    [[nodiscard]] clock::time_point next_deadline() const { return requests_.front().deadline; }

    // The reply `f` ends the oldest request. False when it is not that request's reply: the
    // connection is out of step.
    bool answered(const protocol::frame_view& f) {
        if (requests_.empty() || requests_.front().id != f.h.request_id) return false;
        auto& r = requests_.front();
        if (r.read()) {
            const bool ok = f.h.code == protocol::status::ok || f.h.code == protocol::status::not_found;
            if (r.answer) r.answer(ok, ok && f.h.code == protocol::status::ok ? f.value : std::string_view{});
            r.answer = nullptr;
        } else {
            end(r, f.h.code == protocol::status::ok);
        }
        requests_.pop_front();
        return true;
    }

    // After a reconnect: `again(r)` puts each request on the new connection (under a new id and
    // deadline); those it cannot (a key with no record here any more) end as failed.
    void resend(const std::function<bool(link_request&)>& again) {
        std::deque<link_request> kept;
        for (auto& r : requests_) {
            if (!again(r)) {
                end(r, false);
                continue;
            }
            kept.push_back(std::move(r));
        }
        requests_ = std::move(kept);
    }

    // Ends every read as "could not say" (reads are never re-sent).
    void fail_reads() {
        std::erase_if(requests_, [&](link_request& r) {
            if (!r.read()) return false;
            end(r, false);
            return true;
        });
    }

    // Ends every copy as missed, its key handed to `remember` to be re-sent later (a replayed
    // hint, which no writer waits for, is remembered again and not counted twice); then nothing is
    // in flight. Reads must have been failed first.
    void fail_copies(const std::function<void(std::string)>& remember) {
        for (auto& r : requests_) {
            remember(std::move(r.hint));
            if (!r.done) continue;
            counters_.missed.fetch_add(1, std::memory_order_relaxed);
            r.done(false);
            r.done = nullptr;
        }
        requests_.clear();
    }

    // Ends everything as failed (a link that stops), without hints.
    void fail_all() {
        for (auto& r : requests_) end(r, false);
        requests_.clear();
    }

private:
    void end(link_request& r, bool applied) {
        if (r.read()) {
            if (r.answer) r.answer(false, {});
            r.answer = nullptr;
            return;
        }
        (applied ? counters_.acked : counters_.missed).fetch_add(1, std::memory_order_relaxed);
        if (r.done) r.done(applied);
        r.done = nullptr;
    }

    replication_counters& counters_;
    std::deque<link_request> requests_;
};

}  // namespace dhtkit
