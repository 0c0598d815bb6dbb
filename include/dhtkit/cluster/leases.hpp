#pragma once
// Read leases: how a holder knows that its own copy of a slot is not older than a write that was
// acknowledged without it.
//
// A coordinator acknowledges a write once the replication policy's rule holds, which may be
// without a holder it could not reach (a paused or cut-off node). That holder must then not answer
// reads from its copy. So every node asks each node it shares slots with for a lease, every
// `renew_every`; a granted lease runs `term` from the moment the holder *sent* its request. The
// grantor, in turn, never acknowledges a write without a node before the last lease it granted
// that node has run out (term plus a margin for clocks that tick at slightly different rates), and
// grants it no new lease once it missed a copy, until it has caught up from the grantor again.
// A holder whose lease from every other holder of a slot is current has therefore seen every
// write acknowledged on that slot before now.
//
// A holder may also answer reads while a grantor it cannot reach is *excused* (see
// cluster/lease_keeper.hpp): the grantor's port refused (gone) or did not answer (out of reach).
// An excuse lasts `excuse_term` from the failed request that gave it, so a holder that was paused
// asks again before it answers. A grantor that starts (again) does not know which holders excuse
// it as gone: it counts no write without a holder that has not asked it for a lease since it
// started, for `first_ask_wait` (longer than an excuse lasts); once asked, that holder knows it is
// back. Steady clocks on both sides: wall-clock jumps do not
// matter, and a pause of either process only makes the lease look older.
//
// Under "majority" with a live map, a lease also names the placement it was asked under (the
// asker's map's placement digest): a grantor grants only under its own, and a holder counts a
// lease only under the map it follows now (docs/replication.md, rule 4).
//
//   lease_grants     the grantor's side: what it granted whom, and who is behind
//   lease_holdings   the holder's side: the leases it holds, read on every read
//
// cluster/lease_keeper.hpp renews them.

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

#include "dhtkit/cluster/cluster_map.hpp"

namespace dhtkit {

struct lease_options {
    // Shorter than the replicator's ack timeout (500 ms), so that a coordinator that gave up on a
    // holder rarely has to wait for its lease to run out before acknowledging.
    std::chrono::milliseconds term{300};
    std::chrono::milliseconds renew_every{100};
    std::chrono::milliseconds request_timeout{200};
    // Longer than one renewal round whose request fails (renew_every + a connect and a request).
    std::chrono::milliseconds excuse_term{1000};
    // Longer than excuse_term plus a renewal round: a holder that asked nothing since this
    // grantor started is then either asking, dead, or cut off (a partition's business).
    std::chrono::milliseconds first_ask_wait{2000};

    // How long after a grant the lease it gave has surely run out: its term, 10 % for clocks
    // that tick at different rates, and 5 ms.
    [[nodiscard]] std::chrono::milliseconds surely_over() const noexcept {
        return term + term / 10 + std::chrono::milliseconds(5);
    }
};

class lease_grants {
public:
    using clock = std::chrono::steady_clock;

    explicit lease_grants(lease_options opt = {}) : options_(opt), started_(clock::now()) {}

    // This node starts answering (its port is open): holders that excused it as gone learn that
    // it is back when they next ask, and not before.
    void start() {
        std::lock_guard lock(mutex_);
        started_ = clock::now();
    }

    // Why a lease request is refused: the asker missed a copy from here and has not caught up
    // since; or (under "majority" with a live map) its map places slots otherwise than this
    // node's, or this node took a new map a moment ago and leases granted under the old one may
    // still run (settling).
    enum class refusal : std::uint8_t { none, behind, other_map, settling };
    struct answer {
        refusal why = refusal::none;
        std::chrono::milliseconds term{};  // when granted
        explicit operator bool() const noexcept { return why == refusal::none; }
    };

    // A lease for `asker`, which follows the map whose placement digest is `asker_map` (zero: it
    // follows none in particular), from now on; or why not.
    [[nodiscard]] answer grant(node_id asker, std::uint64_t asker_map = 0) {
        std::lock_guard lock(mutex_);
        auto& g = granted_[asker];
        g.asked = true;
        if (g.behind) return {refusal::behind, {}};
        if (following_ && asker_map != following_) return {refusal::other_map, {}};
        const auto now = clock::now();
        if (now < settled_at_) return {refusal::settling, {}};
        g.last = now;
        latest_ = now;  // a steady clock: no grant was later
        return {refusal::none, options_.term};
    }

    // Under "majority" with a live map: from now on leases go only to nodes whose map has
    // placement digest `map` (cluster_map::placement_digest), and none before every lease granted
    // so far has surely run out, the moment returned: this node acts on the new map only then,
    // too. So at no moment do this node's leases (and its own acting) back two placements, and
    // two maps that place slots otherwise cannot both have more than half of the members behind
    // them (docs/replication.md, rule 4).
    clock::time_point follow(std::uint64_t map) {
        std::lock_guard lock(mutex_);
        following_ = map;
        if (latest_ != clock::time_point{}) settled_at_ = std::max(settled_at_, latest_ + options_.surely_over());
        return settled_at_;
    }
    [[nodiscard]] std::uint64_t following() const {
        std::lock_guard lock(mutex_);
        return following_;
    }

    // `id` missed a copy: no lease for it until it catches up. Returns the moment from which a
    // write may count without it: when the last lease granted to it has surely run out, or, if
    // it has not asked since this node started, when an excuse it may hold has (see the top).
    clock::time_point missed(node_id id) {
        std::lock_guard lock(mutex_);
        auto& g = granted_[id];
        g.behind = true;
        if (!g.asked) return started_ + options_.first_ask_wait;
        if (g.last == clock::time_point{}) return {};
        return g.last + options_.surely_over();
    }

    // `id` asked this node for a catch-up: what it missed is in that stream, and copies go to it
    // directly from now on.
    void caught_up(node_id id) {
        std::lock_guard lock(mutex_);
        granted_[id].behind = false;
    }

    [[nodiscard]] bool behind(node_id id) const {
        std::lock_guard lock(mutex_);
        auto it = granted_.find(id);
        return it != granted_.end() && it->second.behind;
    }

    [[nodiscard]] const lease_options& options() const noexcept { return options_; }

private:
    struct grant_state {
        clock::time_point last{};
        bool behind = false;
        bool asked = false;  // since this node started
    };
    lease_options options_;
    mutable std::mutex mutex_;
    clock::time_point started_;  // guarded by mutex_
    clock::time_point latest_{};  // guarded by mutex_: the last grant to anyone
    std::uint64_t following_ = 0;  // guarded by mutex_: 0, or the placement digest leases need
    clock::time_point settled_at_{};  // guarded by mutex_: no grant before (follow)
    std::unordered_map<node_id, grant_state> granted_;  // guarded by mutex_
};

// The leases this node holds, one per other node of the map. The set of nodes is fixed when it
// is made (the map's nodes), so reads look entries up with no lock.
class lease_holdings {
public:
    using clock = std::chrono::steady_clock;

    // Room for this many grantors over the node's life: with live membership, members that join
    // later are added (add); their entries are never removed, so readers need no lock.
    static constexpr std::size_t capacity = 1024;

    explicit lease_holdings(const std::vector<node_id>& others) {
        for (auto id : others) add(id);
    }

    // Makes room for leases from `id` (none held yet). False when there is no room left.
    bool add(node_id id) noexcept {
        for (std::size_t i = 0; i < capacity; ++i) {
            auto& e = held_[(mix(id) + i) % capacity];
            auto at = e.id.load(std::memory_order_acquire);
            if (at == id) return true;
            if (at != empty) continue;
            std::uint64_t expected = empty;
            if (e.id.compare_exchange_strong(expected, id, std::memory_order_acq_rel)) return true;
            if (expected == id) return true;
        }
        return false;
    }

    // The lease from `from` is current; with `map` non-zero, it was also granted under the map
    // of that placement digest (a lease says nothing about the slots of another map).
    [[nodiscard]] bool valid(node_id from, clock::time_point now = clock::now(), std::uint64_t map = 0) const noexcept {
        const auto* l = find(from);
        return l && now.time_since_epoch().count() < l->until.load(std::memory_order_acquire) &&
               (map == 0 || l->map.load(std::memory_order_acquire) == map);
    }
    // When the lease from `from` runs out (the epoch when none is held).
    [[nodiscard]] clock::time_point valid_until(node_id from) const noexcept {
        const auto* l = find(from);
        return clock::time_point(clock::duration(l ? l->until.load(std::memory_order_acquire) : 0));
    }
    // Whether any lease held is current; `held_any`: whether there is any grantor at all.
    [[nodiscard]] bool any_valid(bool& held_any, clock::time_point now = clock::now()) const noexcept {
        held_any = false;
        for (const auto& e : held_) {
            if (e.id.load(std::memory_order_acquire) == empty) continue;
            held_any = true;
            if (now.time_since_epoch().count() < e.until.load(std::memory_order_acquire)) return true;
        }
        return false;
    }

    // Why a lapsed lease is excused: its grantor's port refuses connections (the process is gone,
    // and a new one grants nothing before it caught up), or it does not answer at all (dead host,
    // hung, or cut off: it might still acknowledge writes on its side of a partition).
    enum class absence : std::uint8_t { none, gone, out_of_reach };

    // The lease from `from` ran out, `from` could not be reached since, and this node caught up
    // from the holders after that; until the next grant, what `from` could acknowledge without
    // this node is what a partitioned coordinator can ("available" consistency accepts that for a
    // node that still hears from another holder; "majority" does not).
    // An excuse runs out (see the top): a node paused past it asks again before it answers.
    [[nodiscard]] absence excused_as(node_id from, clock::time_point now = clock::now()) const noexcept {
        const auto* l = find(from);
        if (!l) return absence::none;
        const auto why = l->excused.load(std::memory_order_acquire);
        if (why == absence::none || now.time_since_epoch().count() >= l->excused_until.load(std::memory_order_acquire))
            return absence::none;
        return why;
    }
    [[nodiscard]] bool excused(node_id from, clock::time_point now = clock::now()) const noexcept {
        return excused_as(from, now) != absence::none;
    }
    // The lease from `from` is over and no catch-up has made up for it yet.
    [[nodiscard]] bool lapsed(node_id from, clock::time_point now = clock::now()) const noexcept {
        return !valid(from, now) && !excused(from, now);
    }

    // `map`: the placement digest of the map the request was sent under (zero: none in particular).
    void renewed(node_id from, clock::time_point asked_at, std::chrono::milliseconds term, std::uint64_t map = 0) noexcept {
        auto* l = find(from);
        if (!l) return;
        // The map first: a reader that sees the new term sees the new map too, and one that sees
        // the old term with the new map is covered by the new grant, made before now.
        l->map.store(map, std::memory_order_release);
        l->until.store((asked_at + term).time_since_epoch().count(), std::memory_order_release);
        l->excused.store(absence::none, std::memory_order_release);
    }
    void revoke(node_id from) noexcept {
        auto* l = find(from);
        if (!l) return;
        l->until.store(0, std::memory_order_release);
        l->excused.store(absence::none, std::memory_order_release);
    }
    // Excused until `until` (the failed request's time plus excuse_term).
    void excuse(node_id from, absence why, clock::time_point until) noexcept {
        auto* l = find(from);
        if (!l) return;
        l->excused_until.store(until.time_since_epoch().count(), std::memory_order_release);
        l->excused.store(why, std::memory_order_release);
    }

private:
    // No node has this id: ids are below 2^62 (the config's bound) or random below 2^63.
    static constexpr std::uint64_t empty = ~std::uint64_t{0};

    struct lease {
        std::atomic<std::uint64_t> id{empty};
        std::atomic<clock::rep> until{0};
        std::atomic<std::uint64_t> map{0};
        std::atomic<absence> excused{absence::none};
        std::atomic<clock::rep> excused_until{0};
    };

    [[nodiscard]] static std::size_t mix(node_id id) noexcept {
        return static_cast<std::size_t>((id * 0x9E3779B97F4A7C15ULL) >> 32);
    }
    [[nodiscard]] const lease* find(node_id id) const noexcept {
        for (std::size_t i = 0; i < capacity; ++i) {
            const auto& e = held_[(mix(id) + i) % capacity];
            const auto at = e.id.load(std::memory_order_acquire);
            if (at == id) return &e;
            if (at == empty) return nullptr;
        }
        return nullptr;
    }
    [[nodiscard]] lease* find(node_id id) noexcept { return const_cast<lease*>(std::as_const(*this).find(id)); }

    std::array<lease, capacity> held_{};
};

}  // namespace dhtkit
