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

static_assert(replication_policy<no_replication>);
static_assert(replication_policy<static_backup>);

// The map a policy makes of `nodes` at `epoch`.
template <replication_policy R>
[[nodiscard]] cluster_map make_cluster_map(const R& policy, std::uint64_t epoch, std::vector<node> nodes) {
    auto slots = policy.place(nodes);
    return cluster_map(epoch, std::move(nodes), std::move(slots));
}

}  // namespace dhtkit
