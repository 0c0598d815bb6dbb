#pragma once
// The replication policy: which nodes hold each slot (home first, then its backups in the order
// clients fall over to them), and when a write counts as acknowledged. Everything that keeps the
// copies equal — the replicator, catch-up, the client's routing — reads the slot table the policy
// made (cluster/cluster_map.hpp), so a policy whose membership changes can stand here beside the
// static ones without touching them.
//
//   no_replication   one copy, on the home node.
//   static_backup    the seed's rule: the slots split into equal contiguous ranges over the nodes
//                    in configured order, and a range's backups are the R nodes after its home,
//                    wrapping around. R comes from the config ([replication] backups), which is
//                    why it is a constructor argument and not a template argument.
//   dynamic_backup   membership is live (cluster/membership.hpp): the nodes that are up hold the
//                    slots, each slot's R+1 holders picked by rendezvous hashing under a load
//                    bound, so a join or a death moves about 1/N of the copies and every node that
//                    runs the same membership makes the same table, whatever order it heard it in.
//
// `follows_membership` says which kind a policy is: when true, the peer runs failure detection
// and gossip and makes a new map whenever the view of the members changes.
//
// The acknowledgement rule is asked once every copy of a write has been applied or found
// unreachable: `acknowledged(applied, holders)` — `applied` counts the node that took the write —
// says whether the client hears ok (true) or unavailable (false). `quorum(holders)` is how many
// holders, the asked one included, must stand behind an answer: a node takes a write only while
// it holds current read leases (cluster/leases.hpp) from enough others to make a quorum, and a
// read that it cannot answer from its own copy (a lease is missing) combines the records of a
// quorum of holders, newest first. Both come from [replication] consistency, a run-time choice:
//
//   available   the seed's rule: every holder that could be reached applied the write; a quorum
//               of one. Both sides of a partition take writes; the higher version wins after.
//   majority    a write needs more than half of the slot's holders, and so does a read; a
//               partitioned minority answers unavailable instead of diverging.

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <utility>
#include <string_view>
#include <vector>

#include "dhtkit/cluster/cluster_map.hpp"

namespace dhtkit {

enum class consistency { available, majority };

// From [replication] backups and consistency.
template <class R>
concept replication_policy = std::constructible_from<R, std::size_t, consistency> &&
    requires(const R& r, const std::vector<node>& nodes, std::size_t applied, std::size_t holders) {
        { r.place(nodes) } -> std::same_as<slot_table>;
        { r.acknowledged(applied, holders) } -> std::same_as<bool>;
        { r.quorum(holders) } -> std::same_as<std::size_t>;
        { R::follows_membership } -> std::convertible_to<bool>;
        { R::name } -> std::convertible_to<std::string_view>;  // what [replication] policy calls it
    };

// The two rules above, for policies that place slots and leave acknowledgement to the config.
class ack_rule {
public:
    explicit ack_rule(consistency c = consistency::available) noexcept : rule_(c) {}
    [[nodiscard]] bool acknowledged(std::size_t applied, std::size_t holders) const noexcept {
        return applied >= quorum(holders);
    }
    [[nodiscard]] std::size_t quorum(std::size_t holders) const noexcept {
        return rule_ == consistency::available ? 1 : holders / 2 + 1;
    }
    [[nodiscard]] consistency rule() const noexcept { return rule_; }

private:
    consistency rule_;
};

namespace detail {
// Slot range i of n near-equal contiguous ranges, split as redis-cli splits them (3 nodes:
// 0-5460, 5461-10922, 10923-16383), so that a dhtkit cluster and a Redis Cluster built the same
// way place keys alike.
[[nodiscard]] inline slot_range equal_range(std::size_t i, std::size_t n) noexcept {
    const double per_node = static_cast<double>(slot_count) / static_cast<double>(n);
    auto last_of = [&](std::size_t k) -> long {
        return k + 1 == n ? long{slot_count - 1} : std::lround(static_cast<double>(k + 1) * per_node - 1);
    };
    long first = i == 0 ? 0 : last_of(i - 1) + 1;
    return {static_cast<slot_t>(first), static_cast<slot_t>(std::max(first, last_of(i)))};
}
}  // namespace detail

struct no_replication : ack_rule {
    static constexpr bool follows_membership = false;
    static constexpr std::string_view name = "none";
    no_replication() = default;
    no_replication(std::size_t, consistency c) : ack_rule(c) {}
    [[nodiscard]] slot_table place(const std::vector<node>& nodes) const {
        slot_table t;
        for (std::size_t i = 0; i < nodes.size(); ++i) t.assign(detail::equal_range(i, nodes.size()), {nodes[i].id});
        return t;
    }
};

class static_backup : public ack_rule {
public:
    static constexpr bool follows_membership = false;
    static constexpr std::string_view name = "static";
    explicit static_backup(std::size_t backups = 2, consistency c = consistency::available) noexcept
        : ack_rule(c), backups_(backups) {}

    [[nodiscard]] slot_table place(const std::vector<node>& nodes) const {
        slot_table t;
        const std::size_t n = nodes.size();
        const std::size_t r = n == 0 ? 0 : std::min(backups_, n - 1);
        for (std::size_t home = 0; home < n; ++home) {
            std::vector<node_id> set;
            for (std::size_t i = 0; i <= r; ++i) set.push_back(nodes[(home + i) % n].id);
            t.assign(detail::equal_range(home, n), std::move(set));
        }
        return t;
    }
    [[nodiscard]] std::size_t backups() const noexcept { return backups_; }

private:
    std::size_t backups_;
};

// Rendezvous hashing with bounded loads. Every slot ranks the placed nodes (state member or
// suspect: a suspect still holds its slots until it is declared dead) by a hash of (slot run, node
// id) and takes the first R+1 that are not full, the first of them as home. A node is full when it
// already holds `cap` copies (or, for the home's place, is home of `cap` slots), cap being 5 %
// above the mean rounded up: so no node holds more than 1.05 x the mean, whatever the ids. A node
// that joins takes about 1/(N+1) of the copies, a node that leaves gives away its own, and little
// else moves: only what the bound pushes on to a node's next choice. The table depends only on the
// set of placed nodes, not on their order or on a previous table: nodes that heard of changes in a
// different order agree once they have heard the same changes.
//
// A run is `run_length` contiguous slots ranked alike, so a run keeps its holders together. A
// Redis client maps the cluster from CLUSTER SLOTS, one entry per range of slots with the same
// holders: ranking slot by slot made that ~16,000 entries (megabytes, each time a client refreshes
// its map), runs make it at most 1,024 plus two per node (a node that fills up ends a range early).
// The price is a coarser spread, so the bound bites more often and a join moves a few per cent
// more than 1/(N+1) (tests/cluster/placement_test.cpp keeps it under 1.1/(N+1)).
class dynamic_backup : public ack_rule {
public:
    static constexpr bool follows_membership = true;
    static constexpr std::string_view name = "dynamic";
    // 16: 1,024 runs; at 64 a join moved 1.2/(N+1) of the copies, at 16 under 1.1/(N+1).
    static constexpr std::size_t run_length = 16;
    explicit dynamic_backup(std::size_t backups = 2, consistency c = consistency::available) noexcept
        : ack_rule(c), backups_(backups) {}

    [[nodiscard]] static bool placed(const node& n) noexcept {
        return dhtkit::placed(n.state);
    }

    [[nodiscard]] slot_table place(const std::vector<node>& nodes) const {
        std::vector<node_id> ids;
        for (const auto& n : nodes)
            if (placed(n)) ids.push_back(n.id);
        std::sort(ids.begin(), ids.end());
        ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
        const std::size_t n = ids.size();
        if (n == 0) return {};
        const std::size_t copies = std::min(backups_, n - 1) + 1;
        const std::size_t held_cap = bound(slot_count * copies, n), home_cap = bound(slot_count, n);
        std::vector<std::size_t> held(n, 0), homes(n, 0);
        std::vector<std::pair<std::uint64_t, std::size_t>> ranked(n);
        std::vector<std::uint32_t> set_of(slot_count);
        std::vector<std::vector<node_id>> sets(1);  // sets[0]: the empty set, for slot_table::of
        std::map<std::vector<node_id>, std::uint32_t> index;
        std::vector<node_id> set;
        for (std::size_t s = 0; s < slot_count; ++s) {
            if (s % run_length == 0) {
                for (std::size_t i = 0; i < n; ++i) ranked[i] = {score(static_cast<slot_t>(s / run_length), ids[i]), i};
                std::sort(ranked.begin(), ranked.end(), std::greater<>());
            }
            set.clear();
            // The home: the best-ranked node with room for a home and a copy. The total room is
            // above what is placed, so some node always has it.
            for (auto [_, i] : ranked)
                if (homes[i] < home_cap && held[i] < held_cap) {
                    set.push_back(ids[i]);
                    ++homes[i];
                    ++held[i];
                    break;
                }
            for (auto [_, i] : ranked) {
                if (set.size() == copies) break;
                if (held[i] >= held_cap || ids[i] == set.front()) continue;
                set.push_back(ids[i]);
                ++held[i];
            }
            auto [it, fresh] = index.try_emplace(set, static_cast<std::uint32_t>(sets.size()));
            if (fresh) sets.push_back(set);
            set_of[s] = it->second;
        }
        return slot_table::of(std::move(set_of), std::move(sets));
    }
    [[nodiscard]] std::size_t backups() const noexcept { return backups_; }

    // The rank of node `n` for slot run `s`: a 64-bit mix of both (splitmix64's finaliser).
    [[nodiscard]] static std::uint64_t score(slot_t s, node_id n) noexcept {
        std::uint64_t z = n ^ (std::uint64_t{s} * 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
    }

private:
    [[nodiscard]] static std::size_t bound(std::size_t total, std::size_t n) noexcept {
        return (total * 105 + n * 100 - 1) / (n * 100);  // ceil(1.05 * total / n)
    }
    std::size_t backups_;
};

static_assert(replication_policy<no_replication>);
static_assert(replication_policy<static_backup>);
static_assert(replication_policy<dynamic_backup>);

// The map a policy makes of `nodes` at `epoch`.
// `rules`: cluster_map's digest of the acknowledgement rules, 0 for none.
template <replication_policy R>
[[nodiscard]] cluster_map make_cluster_map(const R& policy, std::uint64_t epoch, std::vector<node> nodes,
                                           std::uint64_t rules = 0) {
    auto slots = policy.place(nodes);
    return cluster_map(epoch, std::move(nodes), std::move(slots), 0, rules);
}

}  // namespace dhtkit
