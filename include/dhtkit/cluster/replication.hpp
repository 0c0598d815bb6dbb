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
// says whether the client hears ok (true) or unavailable (false).

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "dhtkit/cluster/cluster_map.hpp"

namespace dhtkit {

template <class R>
concept replication_policy = std::constructible_from<R, std::size_t> &&  // from [replication] backups
    requires(const R& r, const std::vector<node>& nodes, std::size_t applied, std::size_t holders) {
        { r.place(nodes) } -> std::same_as<slot_table>;
        { r.acknowledged(applied, holders) } -> std::same_as<bool>;
    };

// Today's rule, the seed's: every holder that could be reached applied the write.
struct every_reachable_holder {
    [[nodiscard]] static bool acknowledged(std::size_t applied, std::size_t) noexcept { return applied >= 1; }
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

struct no_replication : every_reachable_holder {
    no_replication() = default;
    explicit no_replication(std::size_t) {}
    [[nodiscard]] slot_table place(const std::vector<node>& nodes) const {
        slot_table t;
        for (std::size_t i = 0; i < nodes.size(); ++i) t.assign(detail::equal_range(i, nodes.size()), {nodes[i].id});
        return t;
    }
};

class static_backup : public every_reachable_holder {
public:
    explicit static_backup(std::size_t backups = 2) noexcept : backups_(backups) {}

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
