#pragma once
// The cluster map: who is in the cluster and which nodes hold each of the 16384 slots, at one
// epoch. Membership is data: client routing, where a write's copies go, catch-up, the replicator's
// links, `stats` and `where` all read the current map, and nothing else knows how many nodes there
// are or in which order. A replication policy (cluster/replication.hpp) computes the slot table
// from the nodes; a change of membership makes a new map with a higher epoch.
//
// A map is immutable once made. cluster_view publishes a new one with one atomic store; readers
// on hot paths take the current one with one atomic load and no lock. A published map is never
// freed while its view lives (a reader may still hold it): maps change only when membership does,
// and a map is the node list plus a 32 KiB slot index, so keeping every epoch costs little.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "dhtkit/cluster/slots.hpp"
#include "dhtkit/store/stable_hash.hpp"

namespace dhtkit {

using node_id = std::uint64_t;

// A node's standing in the cluster (not whether this process can reach it right now). With a
// static policy every node is a member; with live membership (cluster/membership.hpp) a member
// may be suspected, declared failed, or have left.
enum class node_state : std::uint8_t { member, joining, leaving, failed, suspect, left };

[[nodiscard]] constexpr std::string_view to_string(node_state s) noexcept {
    switch (s) {
        case node_state::member: return "alive";
        case node_state::joining: return "joining";
        case node_state::leaving: return "leaving";
        case node_state::failed: return "dead";
        case node_state::suspect: return "suspect";
        case node_state::left: return "left";
    }
    return "unknown";
}

// Whether the placement gives a node in this state slots: a member, also while suspected.
[[nodiscard]] constexpr bool placed(node_state s) noexcept { return s == node_state::member || s == node_state::suspect; }

struct node {
    node_id id = 0;
    std::string host;
    std::uint16_t port = 0;
    node_state state = node_state::member;
    std::uint16_t resp_port = 0;  // where it speaks RESP (0: it does not)
    friend bool operator==(const node&, const node&) = default;
};

// Slot -> replica set (home first, then the backups in the order clients fall over to them).
// Distinct sets are stored once; a slot holds the index of its set.
class slot_table {
public:
    slot_table() : set_of_(slot_count, 0), sets_(1) {}

    // A table made in one go: slot s gets sets[set_of[s]]. `sets` must not repeat a set; its
    // first must be the empty set (unassigned slots).
    [[nodiscard]] static slot_table of(std::vector<std::uint32_t> set_of, std::vector<std::vector<node_id>> sets) {
        if (set_of.size() != slot_count || sets.empty() || !sets.front().empty())
            throw std::invalid_argument("slot_table::of: one set index per slot, and the empty set first");
        for (auto i : set_of)
            if (i >= sets.size()) throw std::out_of_range("slot_table::of: a slot names no set");
        slot_table t;
        t.set_of_ = std::move(set_of);
        t.sets_ = std::move(sets);
        return t;
    }

    // Gives every slot of [r.first, r.last] the replica set `holders`.
    void assign(slot_range r, std::vector<node_id> holders) {
        if (r.first > r.last || r.last >= slot_count) throw std::out_of_range("slot_table::assign: not a slot range");
        auto it = std::find(sets_.begin(), sets_.end(), holders);
        auto index = static_cast<std::uint32_t>(it - sets_.begin());
        if (it == sets_.end()) sets_.push_back(std::move(holders));
        std::fill(set_of_.begin() + r.first, set_of_.begin() + r.last + 1, index);
    }

    [[nodiscard]] std::span<const node_id> holders(slot_t s) const noexcept { return sets_[set_of_[s]]; }
    // The distinct replica sets (the first the empty one), and which one slot `s` has: what
    // `of` takes, for the map on the wire (cluster/map_codec.hpp).
    [[nodiscard]] const std::vector<std::vector<node_id>>& sets() const noexcept { return sets_; }
    [[nodiscard]] std::uint32_t set_index(slot_t s) const noexcept { return set_of_[s]; }

    // The maximal runs of slots whose replica set includes `n`.
    [[nodiscard]] std::vector<slot_range> ranges_held_by(node_id n) const {
        std::vector<slot_range> out;
        for (std::size_t s = 0; s < slot_count; ++s) {
            const auto& set = sets_[set_of_[s]];
            if (std::find(set.begin(), set.end(), n) == set.end()) continue;
            if (!out.empty() && out.back().last + 1u == s) out.back().last = static_cast<slot_t>(s);
            else out.push_back({static_cast<slot_t>(s), static_cast<slot_t>(s)});
        }
        return out;
    }

    // The maximal runs of slots with one replica set each, in slot order (CLUSTER SLOTS, `where`).
    template <class F>
    void for_each_range(F&& f) const {
        std::size_t start = 0;
        for (std::size_t s = 1; s <= slot_count; ++s) {
            if (s < slot_count && set_of_[s] == set_of_[start]) continue;
            f(slot_range{static_cast<slot_t>(start), static_cast<slot_t>(s - 1)}, std::span<const node_id>(sets_[set_of_[start]]));
            start = s;
        }
    }

private:
    std::vector<std::uint32_t> set_of_;         // slot -> index into sets_
    std::vector<std::vector<node_id>> sets_;    // sets_[0] is the empty set: unassigned slots
};

class cluster_map {
public:
    // `identity`: for a map that changes while the cluster runs (live membership), what stays the
    // same across its epochs; zero for a static map, which is its own identity.
    // `rules`: a digest of what decides who must acknowledge (the rule, R, the policy and its
    // parameters), so that two nodes that would count a write differently refuse each other.
    cluster_map(std::uint64_t epoch, std::vector<node> nodes, slot_table slots, std::uint64_t identity = 0,
                std::uint64_t rules = 0)
        : epoch_(epoch), nodes_(std::move(nodes)), slots_(std::move(slots)), rules_(rules), digest_(compute_digest()),
          placement_digest_(compute_placement_digest()), identity_(identity) {}

    [[nodiscard]] std::uint64_t epoch() const noexcept { return epoch_; }
    // Of the epoch, the nodes and who holds each slot: two maps with one digest route alike.
    [[nodiscard]] std::uint64_t digest() const noexcept { return digest_; }
    // What peers and clients compare when they connect (protocol `hello`): a static map's digest
    // (two sides must route alike), or a live cluster's identity (its maps differ for a moment
    // while a change spreads; the epochs tell which is newer).
    [[nodiscard]] std::uint64_t hello_digest() const noexcept { return identity_ ? identity_ : digest_; }
    // Of who is a member (placed, unplaced or departed) and who holds each slot, not of the
    // epoch nor of addresses: two maps with one placement digest count every write and every
    // lease alike. Under "majority" with a live map, read leases pass only between nodes whose
    // maps agree on it (cluster/leases.hpp).
    [[nodiscard]] std::uint64_t placement_digest() const noexcept { return placement_digest_; }
    [[nodiscard]] bool live() const noexcept { return identity_ != 0; }
    [[nodiscard]] const std::vector<node>& nodes() const noexcept { return nodes_; }
    [[nodiscard]] const slot_table& slots() const noexcept { return slots_; }

    [[nodiscard]] const node* find(node_id id) const noexcept {
        for (const auto& n : nodes_)
            if (n.id == id) return &n;
        return nullptr;
    }
    [[nodiscard]] std::span<const node_id> holders(slot_t s) const noexcept { return slots_.holders(s); }
    [[nodiscard]] std::span<const node_id> holders_of_key(std::string_view key) const noexcept {
        return slots_.holders(key_slot(key));
    }
    [[nodiscard]] bool holds(node_id n, slot_t s) const noexcept {
        auto h = holders(s);
        return std::find(h.begin(), h.end(), n) != h.end();
    }

private:
    [[nodiscard]] std::uint64_t compute_digest() const {
        fmt::memory_buffer text;
        auto out = std::back_inserter(text);
        fmt::format_to(out, "{}", epoch_);
        if (rules_) fmt::format_to(out, "#{}", rules_);
        for (const auto& n : nodes_) {
            fmt::format_to(out, "|{}@{}:{}/{}", n.id, n.host, n.port, static_cast<int>(n.state));
            if (n.resp_port) fmt::format_to(out, "+{}", n.resp_port);
        }
        append_slots(text);
        return stable_hash({text.data(), text.size()});
    }
    [[nodiscard]] std::uint64_t compute_placement_digest() const {
        fmt::memory_buffer text;
        auto out = std::back_inserter(text);
        for (const auto& n : nodes_)
            fmt::format_to(out, "|{}{}", n.id, placed(n.state) ? 'p' : n.state == node_state::left ? 'l' : 'u');
        append_slots(text);
        const auto h = stable_hash({text.data(), text.size()});
        return h ? h : 1;  // zero means "no map" on the wire
    }

    // Each run of slots and its holders, as both digests hash them.
    void append_slots(fmt::memory_buffer& text) const {
        slots_.for_each_range([&](slot_range r, std::span<const node_id> holders) {
            fmt::format_to(std::back_inserter(text), "|{}-{}:", r.first, r.last);
            for (auto id : holders) fmt::format_to(std::back_inserter(text), "{},", id);
        });
    }

    std::uint64_t epoch_;
    std::vector<node> nodes_;
    slot_table slots_;
    std::uint64_t rules_;
    std::uint64_t digest_;
    std::uint64_t placement_digest_;
    std::uint64_t identity_;
};

// The current map, swapped atomically. Any thread may read; publish() may be called from any thread.
class cluster_view {
public:
    explicit cluster_view(cluster_map first) { publish(std::move(first)); }
    cluster_view(const cluster_view&) = delete;
    cluster_view& operator=(const cluster_view&) = delete;

    // Valid as long as the view: see the note at the top.
    [[nodiscard]] const cluster_map& current() const noexcept { return *current_.load(std::memory_order_acquire); }

    // Makes `next` the current map. Its epoch must be above the current one's.
    void publish(cluster_map next) {
        std::lock_guard lock(publish_mutex_);
        auto* now = current_.load(std::memory_order_relaxed);
        if (now && next.epoch() <= now->epoch())
            throw std::invalid_argument("cluster_view::publish: epoch " + std::to_string(next.epoch()) +
                                        " is not above the current " + std::to_string(now->epoch()));
        kept_.push_back(std::make_unique<const cluster_map>(std::move(next)));
        current_.store(kept_.back().get(), std::memory_order_release);
    }

private:
    std::mutex publish_mutex_;
    std::deque<std::unique_ptr<const cluster_map>> kept_;  // guarded by publish_mutex_
    std::atomic<const cluster_map*> current_{nullptr};
};

}  // namespace dhtkit
