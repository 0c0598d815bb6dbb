#pragma once
// When a holder may act on a slot, from the read leases it holds (cluster/leases.hpp), the
// replication policy's quorum and [replication] min_copies. The key service asks these rules
// before it answers a read from its own copy and before it takes a write.
//
// A read is answered from this node's copy when its read leases from every other holder of the
// key's slot are current: no write was acknowledged without it. Otherwise, under "available",
// when each missing lease is excused (its grantor is out of reach and this node caught up since);
// under "majority", from the newest of the records of a quorum of holders; else the client asks
// the next holder. A node takes a write only while it knows where the other holders stand: under
// "available", each one's lease is current or excused (so a node that was itself paused does not
// acknowledge the writes that waited in its sockets on its own, while the others are up); under
// "majority", it holds current leases from enough holders to make a quorum, so a partitioned
// minority refuses writes instead of diverging.
//
// Under "majority" with a live map (the dynamic policy), two more rules keep that promise when
// the map changes (docs/replication.md, "Majority across map changes"): a node answers and takes
// writes only while it holds current leases from more than half of the members it knows (dead
// ones included, departed ones not), so the side of a partition that declares the other dead and
// places its slots anew is the only one that acts; and a map that declares members dead is acted
// on only once every lease this node granted them has run out (act_after). A lease counts only
// under the map it was granted for (lease_map): grantor and holder must agree on the placement.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "dhtkit/cluster/cluster_map.hpp"
#include "dhtkit/cluster/leases.hpp"
#include "dhtkit/cluster/replication.hpp"
#include "dhtkit/cluster/slots.hpp"

namespace dhtkit {

// Whether the member-wide rules hold for `map` (docs/replication.md, "Majority across map
// changes"): "majority" under a live map, whose members may follow different maps for a while.
template <replication_policy Replication>
[[nodiscard]] bool majority_across_maps(const cluster_map& map, const Replication& policy) noexcept {
    return map.live() && policy.quorum(3) >= 2;
}

// The placement digest a lease asked and held under `map` carries: where the member-wide rules
// hold, the map's own (lease_grants::follow); else zero, any.
template <replication_policy Replication>
[[nodiscard]] std::uint64_t lease_map(const cluster_map& map, const Replication& policy) noexcept {
    return majority_across_maps(map, policy) ? map.placement_digest() : 0;
}

template <replication_policy Replication>
class lease_rules {
public:
    // `held`: this node's read leases; null for a node that answers every read from its own copy
    // and takes every write. `min_copies`: a write counts only once at least this many holders
    // applied it (at most all of the slot's holders), whatever the policy's rule.
    lease_rules(node_id self, const Replication& policy, const lease_holdings* held, std::size_t min_copies)
        : self_(self), policy_(policy), held_(held), min_copies_(std::max<std::size_t>(min_copies, 1)) {}

    struct backing {
        bool own_copy = false;   // this node's copy may answer
        std::size_t quorum = 0;  // else: how many holders' records a read needs (1: none will do)
        node_id lapsed = 0;      // a holder whose lease is missing
    };

    // Whether this node's copy of `slot` may answer a read now.
    [[nodiscard]] backing vouch(const cluster_map& map, slot_t slot) const {
        if (!held_) return {true, 1, 0};
        const auto now = lease_holdings::clock::now();
        const auto holders = map.holders(slot);
        const auto under = lease_map(map);
        backing b{true, policy_.quorum(holders.size()), 0};
        // Under "available" a missing lease may be excused: its grantor is gone, or out of reach
        // while another holder's lease is current (a node cut off from all the others does not
        // serve its copy: when the partition heals, it would until its next grant).
        bool excused_all = true, out_of_reach = false, some_current = false;
        for (auto id : holders) {
            if (id == self_) continue;
            if (held_->valid(id, now, under)) {
                some_current = true;
                continue;
            }
            b.own_copy = false;
            b.lapsed = id;
            const auto why = held_->excused_as(id, now);
            excused_all = excused_all && why != lease_holdings::absence::none;
            out_of_reach = out_of_reach || why == lease_holdings::absence::out_of_reach;
        }
        if (!b.own_copy && b.quorum == 1 && excused_all && (!out_of_reach || some_current)) b.own_copy = true;
        // Under "majority" with a live map, the members' maps may differ: one this node takes for
        // dead may be alive in the others' eyes and acknowledge writes with them, and a slot's
        // holders in another member's map may not be its holders here. A lease from a member says
        // it acknowledged nothing without this node, so the copy answers only while every member
        // it knows (departed ones aside) leases to it; otherwise the read asks a quorum.
        if (b.own_copy && majority_across_maps(map, policy_))
            for (const auto& n : map.nodes())
                if (n.id != self_ && n.state != node_state::left && !held_->valid(n.id, now, under)) {
                    b.own_copy = false;
                    b.lapsed = n.id;
                    break;
                }
        return b;
    }

    // Why this node must not take a write now, or nothing.
    // `unversioned`: a RESP write, whose version is its arrival here. A node cut off from every
    // other holder (each excused, none current) does not take one even under "available": it
    // may be a command the network held while its client gave up and wrote the key again
    // elsewhere, arriving as the partition heals (docs/replication.md, RESP writes).
    [[nodiscard]] std::optional<std::string> quorum_short(const cluster_map& map, slot_t slot, std::size_t holders,
                                                          bool unversioned = false) const {
        if (!held_) return std::nullopt;
        const auto rule = policy_.quorum(holders);
        const auto need = std::max(rule, copy_floor(holders));
        const auto now = lease_holdings::clock::now();
        const auto under = lease_map(map);
        std::size_t reachable = 1, heard = 0;  // heard: holders current, or whose port refused (their host answers)
        for (auto id : map.holders(slot)) {
            if (id == self_) continue;
            if (held_->valid(id, now, under)) {
                ++reachable;
                ++heard;
            } else if (rule <= 1 && !held_->excused(id, now)) {
                return fmt::format("peer {} does not know yet whether peer {} is up (its read lease lapsed): "
                                   "ask the next holder", self_, id);
            } else if (held_->excused_as(id, now) == lease_holdings::absence::gone) {
                ++heard;
            }
        }
        if (unversioned && holders > 1 && heard == 0)
            return fmt::format("peer {} hears from none of the other holders of slot {} (it may be cut off): it takes no "
                               "RESP write, which could be one the network held back",
                               self_, slot);
        if (reachable >= need) return std::nullopt;
        return fmt::format("peer {} reaches {} of the {} holders of slot {}; a write needs {}", self_, reachable, holders,
                           slot, need);
    }

    // Why this node must not act for any slot now, or nothing: under
    // "majority" with a live map, it holds leases from no majority of the members it knows, or
    // a new map is not to be acted on yet (act_after).
    [[nodiscard]] std::optional<std::string> members_short(const cluster_map& map) const {
        if (!held_ || !majority_across_maps(map, policy_)) return std::nullopt;
        const auto now = lease_holdings::clock::now();
        if (now.time_since_epoch().count() < act_after_.load(std::memory_order_acquire))
            return fmt::format("peer {} follows a new map: it acts on it once the leases it granted under the old one "
                               "ran out",
                               self_);
        const auto under = lease_map(map);
        std::size_t known = 0, backing = 0;
        for (const auto& n : map.nodes()) {
            if (n.state == node_state::left) continue;
            ++known;
            if (n.id == self_ || held_->valid(n.id, now, under)) ++backing;
        }
        if (backing * 2 > known) return std::nullopt;
        return fmt::format("peer {} holds read leases from {} of the {} members it knows; under \"majority\" it acts "
                           "only with more than half (it may be on the minority side of a partition)",
                           self_, backing, known);
    }

    // The placement digest a lease must have been granted under to count with `map`: under
    // "majority" with a live map, the map's own (a grantor whose map places slots otherwise
    // promised nothing about this map's slots; docs/replication.md, rule 4); else any (zero).
    [[nodiscard]] std::uint64_t lease_map(const cluster_map& map) const noexcept { return dhtkit::lease_map(map, policy_); }

    // The copies a write needs whatever the rule: min_copies, or every holder when there are fewer.
    [[nodiscard]] std::size_t copy_floor(std::size_t holders) const noexcept { return std::min(min_copies_, holders); }


    // Under "majority" with a live map: requests wait (answer unavailable) until `t`, when every
    // lease this node granted under the map it left has run out (lease_grants::follow).
    void act_after(std::chrono::steady_clock::time_point t) noexcept {
        auto rep = t.time_since_epoch().count();
        auto now = act_after_.load(std::memory_order_relaxed);
        while (now < rep && !act_after_.compare_exchange_weak(now, rep, std::memory_order_release)) {
        }
    }

private:
    node_id self_;
    const Replication& policy_;
    const lease_holdings* held_;
    std::size_t min_copies_;
    std::atomic<std::chrono::steady_clock::rep> act_after_{0};
};

// The nodes `self` shares slots with in `m`: its read leases come from them. Under "majority"
// with a live map, every placed member: a node acts only with leases from most members.
template <replication_policy Replication>
[[nodiscard]] std::vector<node> lease_grantors(const cluster_map& m, node_id self, const Replication& policy) {
    std::vector<node> out;
    const bool all_members = majority_across_maps(m, policy);
    for (const auto& n : m.nodes()) {
        if (n.id == self) continue;
        bool shared = all_members && placed(n.state);
        if (!shared) m.slots().for_each_range([&](slot_range, std::span<const node_id> h) {
            shared = shared || (std::find(h.begin(), h.end(), self) != h.end() && std::find(h.begin(), h.end(), n.id) != h.end());
        });
        if (shared) out.push_back(n);
    }
    return out;
}

// Their ids, for lease_holdings.
template <replication_policy Replication>
[[nodiscard]] std::vector<node_id> lease_grantor_ids(const cluster_map& m, node_id self, const Replication& policy) {
    std::vector<node_id> ids;
    for (const auto& n : lease_grantors(m, self, policy)) ids.push_back(n.id);
    return ids;
}

}  // namespace dhtkit
