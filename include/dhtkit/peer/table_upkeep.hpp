#pragma once
// The keys table's upkeep, a few shards per tick of the listener's loop (every 100 ms): expired
// values are freed a shard a tick (the whole table every ~26 s with 256 shards) — reads never see
// them anyway, this gives their memory back — and tombstones past [replication]
// tombstone_purge_s that every holder of their slot has had (cluster/slot_agreements.hpp) are
// purged four shards a tick (the whole table every 6.4 s). After a whole pass that purged
// anything, the allocator is asked to give the freed memory back to the system.

#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "dhtkit/cluster/cluster_map.hpp"

namespace dhtkit {

template <class Index>
class table_upkeep {
public:
    explicit table_upkeep(Index& index) : index_(index) {}

    // One tick. `agreed(slot)`: every holder of the slot has had its tombstones (the purge rule).
    // Returns how many expired values it freed.
    template <class Agreed>
    std::size_t tick(const cluster_map& map, std::size_t shard_count, Agreed&& agreed) {
        const auto reclaimed = index_.reclaim_expired(reclaim_shard_++ % shard_count);
        // A member taken for dead may hold any slot's old values and come back with them (a later
        // map places it again): while one is, nothing is purged.
        const bool member_away = std::any_of(map.nodes().begin(), map.nodes().end(), [](const node& n) {
            return n.state == node_state::failed || n.state == node_state::suspect;
        });
        for (int i = 0; i < 4; ++i) {
            const auto shard = purge_shard_++ % shard_count;
            const auto n = member_away ? std::size_t{0} : index_.purge_tombstones(shard, agreed);
            purged_.fetch_add(n, std::memory_order_relaxed);
            purged_this_pass_ += n;
            if (shard + 1 == shard_count && std::exchange(purged_this_pass_, 0) > 0) ::malloc_trim(0);
        }
        return reclaimed;
    }

    // Tombstones purged so far (any thread).
    [[nodiscard]] std::uint64_t purged() const noexcept { return purged_.load(std::memory_order_relaxed); }

private:
    Index& index_;
    std::size_t reclaim_shard_ = 0;     // the ticking thread's
    std::size_t purge_shard_ = 0;       // the same
    std::size_t purged_this_pass_ = 0;  // the same
    std::atomic<std::uint64_t> purged_{0};
};

}  // namespace dhtkit
