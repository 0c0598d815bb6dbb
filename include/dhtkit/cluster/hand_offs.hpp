#pragma once
// Hand-offs: the nodes taking over slots from this one. With live membership a node that gains a
// slot (a death moved it there) asks the slot's holders for its records (peer/sync_service.hpp).
// Each holder it asks then copies every write to that slot to it too, for a while, whatever its
// own map says: the holder may not have heard of the change yet, and a write it applies after it
// began the stream would otherwise be in neither the stream nor the new holder. The entry lasts
// long enough for the change to reach every node (`term`), after which the map says the same.

#include <algorithm>
#include <atomic>
#include <bitset>
#include <chrono>
#include <mutex>
#include <vector>

#include "dhtkit/cluster/cluster_map.hpp"
#include "dhtkit/concurrency/locks.hpp"

namespace dhtkit {

class hand_offs {
public:
    using clock = std::chrono::steady_clock;

    explicit hand_offs(std::chrono::milliseconds term = std::chrono::seconds(30)) : term_(term) {}

    // `to` takes over `slots` (it asked for their records): copies go to it for the next `term`.
    void add(node_id to, const std::bitset<slot_count>& slots) {
        const auto now = clock::now();
        std::lock_guard guard(lock_);
        std::erase_if(entries_, [&](const entry& e) { return e.until <= now; });
        auto it = std::find_if(entries_.begin(), entries_.end(), [&](const entry& e) { return e.to == to; });
        if (it == entries_.end()) it = entries_.insert(entries_.end(), entry{to, {}, {}});
        it->slots |= slots;
        it->until = now + term_;
        active_.store(entries_.size(), std::memory_order_release);
    }

    // Calls f(id) for each node taking over slot `s` now.
    template <class F>
    void for_slot(slot_t s, F&& f) const {
        if (active_.load(std::memory_order_acquire) == 0) return;  // the usual case: one load
        const auto now = clock::now();
        read_guard guard(lock_);
        for (const auto& e : entries_)
            if (e.until > now && e.slots.test(s)) f(e.to);
    }

    [[nodiscard]] std::size_t active() const noexcept { return active_.load(std::memory_order_relaxed); }

private:
    struct entry {
        node_id to;
        std::bitset<slot_count> slots;
        clock::time_point until;
    };
    std::chrono::milliseconds term_;
    mutable shared_spinlock lock_;
    std::vector<entry> entries_;  // guarded by lock_
    std::atomic<std::size_t> active_{0};
};

}  // namespace dhtkit
