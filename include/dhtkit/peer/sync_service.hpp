#pragma once
// The sync service: both sides of catch-up (cluster/catch_up.hpp). At start, this node asks the
// other holders of its slots for their records and applies them before it serves clients; while
// it serves, it answers other nodes' sync requests with a stream of the records of the slots they
// ask for (peer/sync_stream.hpp).
//
// A node also catches up again, on the slots it shares with one other node, when its read lease
// from that node lapsed (cluster/lease_keeper.hpp): those slots answer `unavailable` meanwhile.

#include <algorithm>
#include <array>
#include <atomic>
#include <bitset>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "dhtkit/cluster/catch_up.hpp"
#include "dhtkit/cluster/catch_up_plan.hpp"
#include "dhtkit/cluster/cluster_map.hpp"
#include "dhtkit/cluster/hand_offs.hpp"
#include "dhtkit/cluster/leases.hpp"
#include "dhtkit/cluster/replicator.hpp"
#include "dhtkit/cluster/slot_agreements.hpp"
#include "dhtkit/log/logger.hpp"
#include "dhtkit/peer/connection.hpp"
#include "dhtkit/cluster/slot_readiness.hpp"
#include "dhtkit/peer/heal_pacer.hpp"
#include "dhtkit/peer/index_service.hpp"
#include "dhtkit/peer/sync_stream.hpp"
#include "dhtkit/peer/settings.hpp"
#include "dhtkit/protocol/messages.hpp"
#include "dhtkit/store/storage.hpp"

namespace dhtkit {

template <string_table Table, storage_policy Storage = any_storage>
class sync_service {
public:
    using log_fn = logger;

    // `grants`: the read leases this node grants; a node that asks for a sync has caught up.
    // `storage`: where records applied by a catch-up are kept beyond the table (null: nowhere).
    sync_service(index_service<Table>& index, node_id self, const cluster_view& view, replicator& copies,
                 protocol::limits lim, protocol::hello_request hello = {}, lease_grants* grants = nullptr,
                 Storage* storage = nullptr, hand_offs* handing = nullptr)
        : index_(index), self_(self), view_(view), copies_(copies), limits_(lim), hello_(std::move(hello)),
          grants_(grants), storage_(storage && storage->keeps() ? storage : nullptr), handing_(handing) {}

    // True once the catch-up at start is done (slots may wait again later, one group at a time).
    [[nodiscard]] bool serving() const noexcept { return serving_.load(std::memory_order_acquire); }
    // Whether slot `s` is caught up: its requests are answered.
    [[nodiscard]] bool ready(slot_t s) const noexcept { return ready_.ready(s); }

    // Asks the other holders of this node's slots for their records and applies them; serves a
    // group of slots (one replica set) once it has caught up on it, and returns when every group
    // has. Run by the peer at start, after it listens (so copies of new writes reach it).
    //
    // A group is caught up after a complete stream from a holder that was serving it, or when
    // each of its other holders gave a complete stream or could not be reached at all (a cluster
    // starting, one node at a time or together: nobody up knows more). A stream cut short does
    // not count: that holder is asked again (backing off from 0.1 s to 1 s), and until it answers
    // whole the group waits, even if it then cannot be reached (it may have died holding writes
    // nobody else has). After `alone_after`, a group still waiting is served with what this node
    // has: there is nobody better to ask, and its keys are unavailable everywhere else too.
    //
    // Slots served without a complete stream from a serving holder nor from every other holder
    // (they were down, or starting themselves) are *unconfirmed*: this node may lack writes they
    // have. It says so, and anti-entropy (repair()) asks them again until they answer whole.
    void catch_up_now(const log_fn& log, std::chrono::milliseconds alone_after = std::chrono::seconds(5)) {
        const auto unsure = catch_up(log, std::nullopt, alone_after);
        unconfirmed_.store(unsure, std::memory_order_relaxed);
        if (unsure > 0)
            log.warning(fmt::format("serving {} slots without a complete copy from their other holders (they were down or "
                            "starting): caught up again as soon as they serve",
                            unsure));
        ready_.set({0, slot_count - 1}, true);
        serving_.store(true, std::memory_order_release);
    }
    // Slots served since start without a complete copy from their other holders, until a repair
    // pass got one (see catch_up_now).
    [[nodiscard]] std::size_t unconfirmed() const noexcept { return unconfirmed_.load(std::memory_order_relaxed); }

    // The same, later, for the slots this node shares with node `with` only: they wait (answer
    // `unavailable`; `waiting` is called once they do) until caught up again, from their other
    // holders and, when `ask_it`, from `with` too. Run by the lease keeper when its lease from
    // `with` lapsed; one catch-up at a time.
    // True when `with`'s own stream was complete (or it was not asked, or shares nothing here).
    bool catch_up_again(node_id with, bool ask_it, const std::function<void()>& waiting, const log_fn& log,
                        std::chrono::milliseconds alone_after = std::chrono::seconds(5)) {
        bool complete = true;
        catch_up(log, with, alone_after, ask_it, waiting, &complete);
        return complete;
    }

    // Slots this node gained in a new map (live membership): they wait from before the map is
    // published until catch_up_gained() has their records.
    void mark_waiting(const std::vector<slot_range>& ranges) {
        std::lock_guard lock(healing_mutex_);
        for (auto r : ranges) {
            ready_.set(r, false);
            for (std::size_t x = r.first; x <= r.last; ++x) healing_.set(x);
        }
    }

    // Catches up slots this node gained (marked waiting first), each range from the nodes given
    // with it: its holders before the change that are still up, and its other holders after.
    void catch_up_gained(const std::vector<std::pair<slot_range, std::vector<node>>>& gained, const log_fn& log,
                         std::chrono::milliseconds alone_after = std::chrono::seconds(30)) {
        std::lock_guard one_at_a_time(heal_mutex_);
        auto p = catch_up_plan::from_gained(self_, gained);
        const auto slots = p.slots();
        const auto t0 = std::chrono::steady_clock::now();
        run(std::move(p), log, std::nullopt, alone_after, {}, fmt::format(" on {} slots this node took over", slots), true,
            true, true);
        heal_ms_.fetch_add(static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::steady_clock::now() - t0).count()),
                           std::memory_order_relaxed);
    }

    // Anti-entropy (live membership): compares this node's slots with each other holder's by
    // digest and pulls what differs, newest version winning, while the slots go on serving; the
    // other holders do the same, so replicas that diverged (both sides of a partition took
    // writes) converge. Every `anti_entropy` period, from the peer's healer thread.
    // With `back`: every slot this node holds, from that node alone. It is back from being taken
    // for dead (a pause, a partition) and may have taken writes meanwhile for slots it no longer
    // holds: its table still has them, and only the slots' holders can take them from it.
    void repair(const log_fn& log, std::optional<node_id> back = std::nullopt) {
        std::lock_guard one_at_a_time(heal_mutex_);
        auto p = back ? catch_up_plan::with_one(view_.current(), self_, *back)
                      : catch_up_plan::from_map(view_.current(), self_, std::nullopt, true);
        const auto unsure = run(std::move(p), log, std::nullopt, std::chrono::seconds(2), {},
                                back ? fmt::format(" (anti-entropy with peer {}, back)", *back) : std::string(" (anti-entropy)"),
                                false, true);
        if (!back) {
            const auto before = unconfirmed_.exchange(unsure, std::memory_order_relaxed);
            if (before > 0 && unsure == 0) log("every slot this node serves is now confirmed by its other holders");
        }
        repairs_.fetch_add(1, std::memory_order_relaxed);
    }
    [[nodiscard]] std::size_t repairs() const noexcept { return repairs_.load(std::memory_order_relaxed); }
    // Which slots each other holder last had the same as this node, by digest (the purge's guard).
    [[nodiscard]] const slot_agreements& agreements() const noexcept { return agreements_; }

    // Healing and anti-entropy take at most this many bytes a second ([replication]
    // heal_mb_per_s; 0: no limit): their streams wait in the socket, so the answering holder's
    // loop and the clients' requests keep their share. The catch-up at start is not paced.
    void pace_healing(std::uint64_t bytes_per_s) noexcept { pacer_.set_rate(bytes_per_s); }
    // What healing and anti-entropy took in: records and bytes.
    [[nodiscard]] std::uint64_t healed_records() const noexcept { return pacer_.records(); }
    [[nodiscard]] std::uint64_t healed_bytes() const noexcept { return pacer_.bytes(); }
    // Time spent catching up gained slots: with healed_bytes, healing's rate.
    [[nodiscard]] double healing_seconds() const noexcept {
        return static_cast<double>(heal_ms_.load(std::memory_order_relaxed)) / 1000.0;
    }

    // Ends a catch-up under way (the peer stops): its slots stay waiting.
    void stop() noexcept { stopping_.store(true, std::memory_order_release); }

    // How many slots are not caught up yet.
    [[nodiscard]] std::size_t waiting_count() const noexcept { return ready_.unready(); }

    // The slot ranges not caught up yet, as "first-last" separated by commas; empty when none.
    [[nodiscard]] std::string waiting() const { return ready_.waiting(); }

    // Answers a sync request on `c`: the records stream after the reply's place; ends the batch.
    void handle(const protocol::frame_view& f, connection& c) {
        protocol::header reply{f.h.op, 0, protocol::status::ok, f.h.request_id, 0, 0};
        auto ask = protocol::decode_sync_request(f.value, f.h.flags & protocol::flag_digests);
        if (!ask || ask->ranges.empty()) {
            reply.code = protocol::status::bad_request;
            c.answer(reply, "a sync request is the asker's node id, then slot ranges");
            return;
        }
        // A live cluster's new member asks before this node has heard of it: it could not copy
        // later writes there (no address), so the stream would not be complete. It asks again.
        if (handing_ && ask->asker != self_ && !view_.current().find(ask->asker)) {
            reply.code = protocol::status::unavailable;
            c.answer(reply, fmt::format("peer {} has not heard of node {} yet: ask again", self_, ask->asker));
            return;
        }
        // The asker is up again: copies go to it directly from now on, and what it missed before
        // now is in the stream below, which starts after this point.
        if (ask->asker != self_) {
            if (grants_) grants_->caught_up(ask->asker);
            copies_.peer_is_up(ask->asker);
        }
        auto stream = std::make_unique<sync_stream<Table>>(index_, reply, ready_, agreements_, ask->asker);
        const auto& asked = stream->ask_for(ask->ranges, ask->digests);
        // Before the stream starts: a write applied here from now on is copied to the asker, even
        // if this node's map does not have it hold those slots yet (cluster/hand_offs.hpp).
        if (handing_ && ask->asker != self_) handing_->add(ask->asker, asked);
        // Behind any reply still held, so that it starts only when they have gone.
        auto h = c.hold();
        h->then = std::move(stream);
        c.release();
    }

    [[nodiscard]] std::size_t caught_up_records() const noexcept { return records_.load(std::memory_order_relaxed); }
    [[nodiscard]] std::size_t caught_up_from() const noexcept { return peers_.load(std::memory_order_relaxed); }

private:
    // Marks caught-up slots ready. Slots a new map gave this node are served only by the catch-up
    // that heals them (`heals`): another catch-up (a lapsed lease's) asks only the current
    // holders, and the slot's records may be with a holder that is no longer one.
    void serve_range(slot_range r, bool heals) {
        std::lock_guard lock(healing_mutex_);
        std::size_t from = r.first;
        for (std::size_t x = r.first; x <= static_cast<std::size_t>(r.last) + 1; ++x) {
            const bool skip = x <= r.last && !heals && healing_.test(x);
            if (x <= r.last && !skip) continue;
            if (x > from) ready_.set({static_cast<slot_t>(from), static_cast<slot_t>(x - 1)}, true);
            from = x + 1;
        }
        if (heals)
            for (std::size_t x = r.first; x <= r.last; ++x) healing_.reset(x);
    }

    using plan = catch_up_plan;
    using group = catch_up_plan::group;
    using source = catch_up_plan::source;

    // `with_complete`, when given: set to whether `with`'s own stream was complete.
    std::size_t catch_up(const log_fn& log, std::optional<node_id> with, std::chrono::milliseconds alone_after,
                         bool ask_with = true, const std::function<void()>& waiting = {}, bool* with_complete = nullptr) {
        std::lock_guard one_at_a_time(catch_up_mutex_);
        auto p = catch_up_plan::from_map(view_.current(), self_, with, ask_with);
        if (with_complete) {
            *with_complete = true;
            for (const auto& s : p.sources)
                if (with && s.at.id == *with) *with_complete = false;  // asked: complete only if it came whole
        }
        return run(std::move(p), log, with, alone_after, waiting, {}, true, false, false, with_complete);
    }

    // `serve`: slots whose group is caught up are marked ready (false: their readiness is left
    // as it is, for a pass over slots that serve already). `paced`: healing's rate applies.
    // Returns how many slots lack a complete stream from a serving holder or from every other
    // holder: those this node may serve without writes that another holder has.
    // `with_complete`: when `with` is among the sources, set to whether its stream was complete.
    std::size_t run(plan p, const log_fn& log, std::optional<node_id> with, std::chrono::milliseconds alone_after,
             const std::function<void()>& waiting = {}, std::string_view what = {}, bool serve = true,
             bool paced = false, bool heals = false, bool* with_complete = nullptr) {
        const auto records_before = records_.load(std::memory_order_relaxed);
        auto& groups = p.groups;
        auto& sources = p.sources;
        if (with) {
            // A group with nobody to ask (its only other holder is `with`, not asked) is served
            // as it is: it has no one better to learn from.
            for (const auto& g : groups)
                if (!g.ready) ready_.set(g.range, false);
            if (waiting) waiting();
            // The lapsed grantor last: it is the one most likely to be out of reach, and the
            // groups it shares are served again as soon as another holder's stream is complete.
            std::stable_partition(sources.begin(), sources.end(), [&](const source& x) { return x.at.id != *with; });
        }
        const auto alone_at = std::chrono::steady_clock::now() + alone_after;
        // Serves every group that is caught up by now; true when all are.
        auto settle = [&](bool alone) {
            return p.settle(alone, [&](slot_range r) {
                if (serve) serve_range(r, heals);
            });
        };
        // What this node holds already, slot by slot: a holder leaves out the slots that agree, so
        // that a node back from a short absence (a restart with its log, a lapsed lease) pulls
        // only what changed. A node with nothing sends none at start; once it serves it always
        // does, so that the holders learn that it agrees with them (cluster/slot_agreements.hpp).
        std::vector<std::uint64_t> digests;
        if (index_.size() > 0 || (serving() && !heals)) {
            std::bitset<slot_count> mine;
            for (const auto& g : groups)
                for (std::size_t x = g.range.first; x <= g.range.last; ++x) mine.set(x);
            digests = index_.slot_digests(mine);
        }
        auto wait = std::chrono::milliseconds(100);
        for (;;) {
            if (stopping_.load(std::memory_order_acquire)) return 0;
            for (auto& s : sources) {
                if (s.tried && s.last.complete() && s.last.from_serving) continue;
                s.last = catch_up_from(self_, hello_, s.at, s.ranges, limits_,
                                       [&](std::string_view key, std::string_view record) {
                                           // Kept without waiting: a record lost to a crash here is caught up again.
                                           if (index_.apply(key, record, true) && storage_)  // a holder's table as it is now
                                               storage_->append(key, record, nullptr);
                                           if (paced) pacer_.take(key.size() + record.size());
                                       },
                                       std::chrono::milliseconds(250), with ? std::chrono::seconds(1) : std::chrono::seconds(5),
                                       digests.empty() ? nullptr : &digests);
                // Another map: this node and that one disagree about who holds what. Serving
                // would misroute silently; not starting says why.
                if (s.last.how == sync_outcome::ended::other_map) throw settings_error(s.last.why);
                s.tried = true;
                s.broke_off = s.broke_off || s.last.how == sync_outcome::ended::cut_short;
                records_.fetch_add(s.last.records, std::memory_order_relaxed);  // stats are served meanwhile
                if (!s.last.complete()) log.warning(fmt::format("catching up: peer {}: {}", s.at.id, s.last.why));
                settle(false);
            }
            if (settle(std::chrono::steady_clock::now() >= alone_at)) break;
            std::this_thread::sleep_for(wait);  // the start-up or lease keeper's thread, not a loop
            wait = std::min(wait * 2, std::chrono::milliseconds(1000));
        }
        const auto complete = p.complete_sources();
        const auto unsure = p.unsure_slots();
        if (with_complete && with)
            for (const auto& s : sources)
                if (s.at.id == *with) *with_complete = s.last.complete();
        peers_.store(complete, std::memory_order_relaxed);
        if (!sources.empty() && (serve || records_.load(std::memory_order_relaxed) != records_before))
            log(fmt::format("caught up{}: {} records in all; complete streams from {} of {} peers",
                            !what.empty() ? std::string(what)
                            : with      ? fmt::format(" on the slots shared with peer {}", *with)
                                        : std::string(),
                            records_.load(std::memory_order_relaxed), complete, sources.size()));
        return unsure;
    }

    index_service<Table>& index_;
    node_id self_;
    const cluster_view& view_;
    replicator& copies_;
    protocol::limits limits_;
    protocol::hello_request hello_;
    lease_grants* grants_;
    Storage* storage_;
    hand_offs* handing_;

    std::atomic<bool> serving_{false};
    std::atomic<bool> stopping_{false};
    std::mutex catch_up_mutex_;  // the catch-up at start and the lease keeper's: one at a time
    std::mutex heal_mutex_;      // healing and anti-entropy (the healer's thread), beside those
    std::mutex healing_mutex_;
    std::bitset<slot_count> healing_;  // guarded by healing_mutex_: slots waiting for catch_up_gained
    slot_readiness ready_;
    std::atomic<std::size_t> records_{0};
    std::atomic<std::size_t> peers_{0};
    std::atomic<std::size_t> repairs_{0};
    std::atomic<std::size_t> unconfirmed_{0};
    slot_agreements agreements_;
    heal_pacer pacer_;
    std::atomic<std::uint64_t> heal_ms_{0};
};

}  // namespace dhtkit
