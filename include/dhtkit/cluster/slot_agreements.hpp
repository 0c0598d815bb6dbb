#pragma once
// When each other holder last had exactly this node's entries of a slot: what makes purging a
// tombstone safe. Anti-entropy asks with its slots' digests; the node answering compares them
// with its own, and a slot whose digests are equal was, at that moment, the same on both nodes:
// the asker had every tombstone this node had (or had already dropped it as past the purge period,
// with nothing older under it). A tombstone is purged only once every current holder of its slot
// agreed so after the delete (index_service::purge_tombstones): a holder that missed the delete
// keeps the digests apart, so nobody forgets the delete while somebody still has the old value.

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <span>
#include <unordered_map>
#include <vector>

#include "dhtkit/cluster/cluster_map.hpp"

namespace dhtkit {

class slot_agreements {
public:
    // Node `with` had the same entries as this node in each slot of `slots` at stamp `at`.
    template <class Slots>
    void agreed(node_id with, const Slots& slots, std::uint64_t at) {
        std::lock_guard lock(mutex_);
        auto& last = by_node_[with];
        if (last.empty()) last.assign(slot_count, 0);
        for (std::size_t s = 0; s < slot_count; ++s)
            if (slots.test(s)) last[s] = std::max(last[s], at);
    }

    // The stamp by which every one of `holders` but `self` had agreed on slot `s`: the earliest of
    // their last agreements (0 when one of them never agreed). A node alone: its own now.
    [[nodiscard]] std::uint64_t agreed_by_all(slot_t s, std::span<const node_id> holders, node_id self,
                                              std::uint64_t now) const {
        std::lock_guard lock(mutex_);
        std::uint64_t by = now;
        for (auto h : holders) {
            if (h == self) continue;
            auto it = by_node_.find(h);
            by = std::min(by, it == by_node_.end() ? 0 : it->second[s]);
        }
        return by;
    }

private:
    mutable std::mutex mutex_;
    std::unordered_map<node_id, std::vector<std::uint64_t>> by_node_;
};

}  // namespace dhtkit
