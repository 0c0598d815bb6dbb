#pragma once
// The RESP front's cluster commands, as Redis Cluster clients read them: CLUSTER KEYSLOT, MYID,
// SLOTS, SHARDS, NODES and INFO, and DHT.WHERE, rendered from the cluster map. Nodes without a
// resp_port are left out (a RESP client could not reach them); a node is the "master" of the
// slots it is the home of, and a replica of the others it holds.

#include <algorithm>
#include <cstdint>
#include <cstddef>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "dhtkit/cluster/cluster_map.hpp"
#include "dhtkit/cluster/slots.hpp"
#include "dhtkit/protocol/resp.hpp"

namespace dhtkit::resp_cluster {

// A node's name as Redis Cluster shows one: 40 hex digits.
[[nodiscard]] inline std::string node_name(node_id id) { return fmt::format("{:040x}", id); }

[[nodiscard]] inline bool speaks_resp(const cluster_map& map, node_id id) {
    const auto* n = map.find(id);
    return n && n->resp_port;
}

// Writes [host, resp_port, name] of node `id`; false when it has no resp_port.
inline bool endpoint(std::string& o, const cluster_map& map, node_id id) {
    const auto* n = map.find(id);
    if (!n || !n->resp_port) return false;
    protocol::resp::array(o, 3);
    protocol::resp::bulk(o, n->host);
    protocol::resp::integer(o, n->resp_port);
    protocol::resp::bulk(o, node_name(id));
    return true;
}

// CLUSTER SHARDS: one shard per replica set, with its slot ranges and its nodes (home first).
inline void shards(std::string& o, const cluster_map& map) {
    std::vector<std::pair<std::vector<node_id>, std::vector<slot_range>>> sets;
    map.slots().for_each_range([&](slot_range r, std::span<const node_id> h) {
        if (h.empty()) return;
        std::vector<node_id> ids(h.begin(), h.end());
        auto it = std::find_if(sets.begin(), sets.end(), [&](const auto& s) { return s.first == ids; });
        if (it == sets.end()) sets.push_back({std::move(ids), {r}});
        else it->second.push_back(r);
    });
    protocol::resp::array(o, sets.size());
    for (const auto& [ids, ranges] : sets) {
        protocol::resp::array(o, 4);
        protocol::resp::bulk(o, "slots");
        protocol::resp::array(o, ranges.size() * 2);
        for (auto r : ranges) {
            protocol::resp::integer(o, r.first);
            protocol::resp::integer(o, r.last);
        }
        protocol::resp::bulk(o, "nodes");
        std::size_t shown = 0;
        for (auto id : ids) shown += speaks_resp(map, id);
        protocol::resp::array(o, shown);
        for (std::size_t i = 0; i < ids.size(); ++i) {
            const auto* n = map.find(ids[i]);
            if (!n || !n->resp_port) continue;
            protocol::resp::array(o, 12);
            protocol::resp::bulk(o, "id");
            protocol::resp::bulk(o, node_name(n->id));
            protocol::resp::bulk(o, "port");
            protocol::resp::integer(o, n->resp_port);
            protocol::resp::bulk(o, "ip");
            protocol::resp::bulk(o, n->host);
            protocol::resp::bulk(o, "endpoint");
            protocol::resp::bulk(o, n->host);
            protocol::resp::bulk(o, "role");
            protocol::resp::bulk(o, i == 0 ? "master" : "replica");
            protocol::resp::bulk(o, "health");
            protocol::resp::bulk(o, "online");
        }
    }
}

// The subcommands it answers (upper case), whatever their arguments.
[[nodiscard]] inline bool knows(std::string_view sub) {
    return sub == "KEYSLOT" || sub == "MYID" || sub == "SLOTS" || sub == "SHARDS" || sub == "NODES" || sub == "INFO";
}

// CLUSTER `sub` (upper case) with `args` (CLUSTER and the subcommand included), as seen by node
// `self`: the reply appended to `o`. False for a subcommand it does not know, or the wrong count
// of arguments (nothing appended).
inline bool reply(std::string& o, std::string_view sub, const std::vector<std::string_view>& args, const cluster_map& map,
                  node_id self) {
    if (sub == "KEYSLOT" && args.size() == 3) {
        protocol::resp::integer(o, key_slot(args[2]));
    } else if (sub == "MYID" && args.size() == 2) {
        protocol::resp::bulk(o, node_name(self));
    } else if (sub == "SLOTS" && args.size() == 2) {
        std::string body;
        std::size_t ranges = 0;
        map.slots().for_each_range([&](slot_range r, std::span<const node_id> h) {
            std::size_t shown = 0;
            for (auto id : h) shown += speaks_resp(map, id);
            if (h.empty() || !speaks_resp(map, h.front())) return;
            ++ranges;
            protocol::resp::array(body, 2 + shown);
            protocol::resp::integer(body, r.first);
            protocol::resp::integer(body, r.last);
            for (auto id : h) endpoint(body, map, id);
        });
        protocol::resp::array(o, ranges);
        o += body;
    } else if (sub == "SHARDS" && args.size() == 2) {
        shards(o, map);
    } else if (sub == "NODES" && args.size() == 2) {
        std::string body;
        for (const auto& n : map.nodes()) {
            if (!n.resp_port) continue;
            std::string ranges;
            for (auto r : map.slots().ranges_held_by(n.id)) {
                // A node is the "master" of the slots it is home of.
                std::size_t first = r.first;
                for (std::size_t s = r.first; s <= r.last + 1u; ++s) {
                    const bool home = s <= r.last && map.holders(static_cast<slot_t>(s)).front() == n.id;
                    if (home) continue;
                    if (s > first) ranges += s - 1 == first ? fmt::format(" {}", first) : fmt::format(" {}-{}", first, s - 1);
                    first = s + 1;
                }
            }
            fmt::format_to(std::back_inserter(body), "{} {}:{}@{} {}master - 0 0 {} connected{}\n", node_name(n.id), n.host,
                           n.resp_port, n.port, n.id == self ? "myself," : "", map.epoch(), ranges);
        }
        protocol::resp::bulk(o, body);
    } else if (sub == "INFO" && args.size() == 2) {
        std::size_t known = 0;
        for (const auto& n : map.nodes()) known += n.resp_port != 0;
        const auto body = fmt::format(
            "cluster_state:ok\r\ncluster_slots_assigned:{0}\r\ncluster_slots_ok:{0}\r\ncluster_slots_pfail:0\r\n"
            "cluster_slots_fail:0\r\ncluster_known_nodes:{1}\r\ncluster_size:{1}\r\ncluster_current_epoch:{2}\r\n"
            "cluster_my_epoch:{2}\r\n",
            slot_count, known, map.epoch());
        protocol::resp::bulk(o, body);
    } else {
        return false;
    }
    return true;
}

// DHT.WHERE key: its slot and its holders (home first), as "id host:port" with the RESP port.
inline void where(std::string& o, std::string_view key, const cluster_map& map) {
    const auto slot = key_slot(key);
    const auto h = map.holders(slot);
    protocol::resp::array(o, 1 + h.size());
    protocol::resp::integer(o, slot);
    for (auto id : h) {
        const auto* n = map.find(id);
        protocol::resp::bulk(o, n ? fmt::format("{} {}:{}", id, n->host, n->resp_port ? n->resp_port : n->port)
                                  : fmt::format("{}", id));
    }
}

// `-MOVED <slot> <host>:<resp_port>` of the home of `slot` when `self` does not hold it, or nothing.
[[nodiscard]] inline std::optional<std::string> moved_to(const cluster_map& map, node_id self, slot_t slot) {
    if (map.holds(self, slot)) return std::nullopt;
    const auto h = map.holders(slot);
    if (h.empty()) return std::string("CLUSTERDOWN Hash slot not served");
    const auto* home = map.find(h.front());
    if (!home || !home->resp_port) return fmt::format("ERR slot {} is held by peer {}, which has no resp_port", slot, h.front());
    return fmt::format("MOVED {} {}:{}", slot, home->host, home->resp_port);
}

// CLUSTER SLOTS, made once per map (its digest) and shared: every cluster client asks on
// connecting and after each MOVED, and under the dynamic policy the reply lists up to ~1,000
// ranges (some 150 KB for three nodes).
class slots_cache {
public:
    [[nodiscard]] std::shared_ptr<const std::string> reply(const cluster_map& map, node_id self) {
        std::lock_guard lock(mutex_);
        if (!made_ || digest_ != map.digest()) {
            auto made = std::make_shared<std::string>();
            (void)resp_cluster::reply(*made, "SLOTS", {"CLUSTER", "SLOTS"}, map, self);
            made_ = std::move(made);
            digest_ = map.digest();
        }
        return made_;
    }

private:
    std::mutex mutex_;
    std::shared_ptr<const std::string> made_;  // guarded by mutex_
    std::uint64_t digest_ = 0;                 // guarded by mutex_
};

// What the front answers to CLUSTER `sub` (upper case): SLOTS from `cache`, the rest as `reply`
// makes it; false as `reply`.
inline bool answer(std::string& o, std::string_view sub, const std::vector<std::string_view>& args, const cluster_map& map,
                   node_id self, slots_cache& cache) {
    if (sub != "SLOTS" || args.size() != 2) return reply(o, sub, args, map, self);
    o += *cache.reply(map, self);
    return true;
}

}  // namespace dhtkit::resp_cluster
