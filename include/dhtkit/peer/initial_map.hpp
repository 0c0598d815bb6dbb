#pragma once
// The map a cluster starts from, made the same way by every peer and client from the cluster's
// file, and the rules its nodes compare when they connect.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "dhtkit/cluster/cluster_map.hpp"
#include "dhtkit/cluster/replication.hpp"
#include "dhtkit/peer/settings.hpp"
#include "dhtkit/store/stable_hash.hpp"

namespace dhtkit {

// Everything in the settings that changes who holds a slot or who must acknowledge a write: the
// placement policy, R, the rule and the floor on copies. Nodes that differ in any of them would
// count the same write differently, so they refuse each other when they connect (`hello`).
[[nodiscard]] inline std::string cluster_rules(const cluster_settings& cluster) {
    return fmt::format("policy={} backups={} consistency={} min_copies={}",
                       cluster.live_membership ? "dynamic" : "static", cluster.backups,
                       cluster.consistency_rule == consistency::majority ? "majority" : "available",
                       cluster.min_copies);
}
[[nodiscard]] inline std::uint64_t cluster_rules_digest(const cluster_settings& cluster) {
    return stable_hash(cluster_rules(cluster)) | 1;
}

// What the nodes of a live cluster compare when they connect (cluster_map::hello_digest): its
// maps change as members come and go, but its rules and the seeds of its file do not.
[[nodiscard]] inline std::uint64_t live_cluster_identity(const cluster_settings& cluster) {
    std::vector<std::string> seeds;
    for (const auto& p : cluster.peers)
        if (p.seed) seeds.push_back(fmt::format("{}@{}:{}", p.id, p.host, p.port));
    std::sort(seeds.begin(), seeds.end());
    auto text = fmt::format("{}|{}", cluster_rules(cluster), fmt::join(seeds, ","));
    return stable_hash(text) | 1;  // never zero: zero means a static map
}

// The map a cluster starts from: its peers in file order, placed by `policy`. A static map has
// epoch 1; a live one the epoch of a membership view that knows just these peers, alive.
template <replication_policy R>
[[nodiscard]] cluster_map initial_cluster_map(const cluster_settings& cluster, const R& policy) {
    std::vector<node> nodes;
    for (const auto& p : cluster.peers)
        if (p.seed) nodes.push_back({p.id, p.host, p.port, node_state::member, p.resp_port});
    if constexpr (R::follows_membership) {
        auto slots = policy.place(nodes);
        const auto epoch = nodes.size();
        return cluster_map(epoch, std::move(nodes), std::move(slots), live_cluster_identity(cluster));
    } else {
        return make_cluster_map(policy, 1, std::move(nodes), cluster_rules_digest(cluster));
    }
}

// The initial map of the policy the settings name ([replication] policy).
[[nodiscard]] inline cluster_map initial_cluster_map(const cluster_settings& cluster) {
    if (cluster.live_membership) return initial_cluster_map(cluster, dynamic_backup(cluster.backups, cluster.consistency_rule));
    return initial_cluster_map(cluster, static_backup(cluster.backups, cluster.consistency_rule));
}

}  // namespace dhtkit
