#pragma once
// This node's copies as replication sees them: the key table and the file table, every entry
// versioned (store/versioned.hpp). A record another holder sent is applied only when it is newer
// than what is here; tombstones past the purge period are removed once every holder agreed;
// expired values are freed; and the tables are walked shard by shard for catch-ups, digests and
// anti-entropy. The index service (peer/index_service.hpp) answers requests on top of this.

#include <algorithm>
#include <atomic>
#include <bitset>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dhtkit/cluster/slots.hpp"
#include "dhtkit/protocol/messages.hpp"
#include "dhtkit/store/locked_table.hpp"
#include "dhtkit/store/stable_hash.hpp"
#include "dhtkit/store/versioned.hpp"

namespace dhtkit {

template <string_table Table>
class replica_tables {
public:
    // `max_skew`: a version stamped further ahead of this host's clock is refused, so that one
    // bad clock (or one forged record) cannot make every later write to a key lose.
    replica_tables(Table& keys, Table& files, std::chrono::milliseconds max_skew)
        : keys_(keys), files_(files), max_skew_us_(static_cast<std::uint64_t>(max_skew.count()) * 1000) {}

    // Applies a record another replica sent. False when it is malformed; a record older than the
    // entry here is accepted and ignored. `from_state`: the record is part of what a holder has
    // now (a catch-up or anti-entropy stream) or of this node's own log. Otherwise it is a copy of
    // one write, which may arrive late (a hint replayed long after), and a copy stamped before the
    // purge horizon for a key this node does not have is not kept: the key's later history may
    // have ended in a delete that is purged here, and the old value would come back. A stream
    // carries no such risk: a holder that still had the old value would have kept every holder
    // from purging the delete (see "Purging tombstones"), and a holder that missed a write long
    // ago must be able to get it.
    bool apply(std::string_view key, std::string_view record, bool from_state = false) {
        auto table = protocol::record_table(record);
        if (!table || key.empty()) return false;
        auto entry = record.substr(1);
        auto incoming = read_versioned(entry);
        if (!incoming) return false;
        if (too_far_ahead(incoming->version)) {
            refused_ahead_.fetch_add(1, std::memory_order_relaxed);
            return false;
        }
        const auto horizon = purge_horizon();
        (*table == protocol::table_id::keys ? keys_ : files_).update(key, [&](auto now) -> std::optional<std::string> {
            if (now) {
                auto mine = read_versioned(*now);
                if (mine && mine->version >= incoming->version) return std::nullopt;
            } else if (purgeable(*incoming, horizon) || (!from_state && incoming->version.stamp < horizon)) {
                return std::nullopt;  // a delete old enough to be purged, or a value older than a purge
            }
            return std::string(entry);
        });
        return true;
    }

    // --- Purging tombstones ([replication] tombstone_purge_s) ------------------------------------
    //
    // A tombstone (or an expired value, which reads as one) whose stamp is older than the purge
    // period is *past the horizon*. Every holder decides that alone, from its own clock, against a
    // horizon rounded down to the second, so that holders agree on which entries are past it:
    // digests leave such entries out (a holder that purged one agrees with one that has not yet),
    // and a copy of one that arrives for a key this node does not have is not kept. It is removed
    // for good only once every current holder of its slot has agreed with this node's digest of
    // that slot at least half a period after the delete (cluster/slot_agreements.hpp): a holder
    // that missed the delete and kept the old value keeps the digests apart, is sent the
    // tombstone by anti-entropy, and only then does anybody forget it. What may still bring a
    // deleted value back is a node that comes back with data older than the period
    // (docs/replication.md, "Purging tombstones").

    // 0: never purge.
    void purge_after(std::chrono::milliseconds period) noexcept {
        purge_after_us_.store(static_cast<std::uint64_t>(period.count()) * 1000, std::memory_order_relaxed);
    }
    [[nodiscard]] std::chrono::milliseconds purge_period() const noexcept {
        return std::chrono::milliseconds(purge_after_us_.load(std::memory_order_relaxed) / 1000);
    }
    // Stamps below this are past the purge period (0 when nothing is purged).
    [[nodiscard]] std::uint64_t purge_horizon() const noexcept {
        const auto period = purge_after_us_.load(std::memory_order_relaxed);
        const auto now = stamp_now();
        if (period == 0 || now <= period) return 0;
        return (now - period) / 1'000'000 * 1'000'000;
    }
    [[nodiscard]] static bool purgeable(const versioned_view& v, std::uint64_t horizon) noexcept {
        return v.version.stamp < horizon && (v.tombstone || v.expired(unix_ms_now()));
    }

    // Removes the entries of shard `shard` of both tables that are past the horizon and that
    // every holder of their slot had: `agreed_by(slot)` is the stamp by which they all agreed
    // with this node on that slot (slot_agreements::agreed_by_all). Returns how many.
    template <class AgreedBy>
    std::size_t purge_tombstones(std::size_t shard, AgreedBy&& agreed_by) {
        const auto horizon = purge_horizon();
        if (horizon == 0) return 0;
        const auto half_period = purge_after_us_.load(std::memory_order_relaxed) / 2;
        std::size_t purged = 0;
        std::vector<std::pair<std::string, dhtkit::version>> due;
        for (Table* t : {&keys_, &files_}) {
            due.clear();
            t->for_each_in(shard, [&](std::string_view k, std::string_view v) {
                auto r = read_versioned(v);
                if (r && purgeable(*r, horizon) && r->version.stamp + half_period <= agreed_by(key_slot(k)))
                    due.emplace_back(std::string(k), r->version);
            });
            for (const auto& [k, ver] : due)
                purged += t->erase_if(k, [&, v = ver](std::string_view now) {  // not if written since
                    auto r = read_versioned(now);
                    return r && r->version == v && purgeable(*r, horizon);
                });
            if (due.size() > 64) t->shrink_shard(shard);
        }
        return purged;
    }

    // Entries held, both tables, tombstones included.
    [[nodiscard]] std::size_t size() const { return keys_.size() + files_.size(); }

    // Keys with a live value (tombstones and expired values left out): a walk over the key
    // table, one shard at a time.
    [[nodiscard]] std::size_t live_keys() const {
        std::size_t n = 0;
        const auto now_ms = unix_ms_now();
        keys_.for_each([&](std::string_view, std::string_view v) {
            auto r = read_versioned(v);
            n += r && !r->tombstone && !r->expired(now_ms);
        });
        return n;
    }

    // Frees the values of shard `shard`'s expired keys: each becomes a tombstone of the same
    // version (so a copy of the value arriving later changes nothing, and digests, which count an
    // expired value as a tombstone, still agree). Returns how many. Any thread; one shard's lock
    // at a time.
    std::size_t reclaim_expired(std::size_t shard) {
        const auto now_ms = unix_ms_now();
        std::vector<std::string> expired;
        keys_.for_each_in(shard, [&](std::string_view k, std::string_view v) {
            auto r = read_versioned(v);
            if (r && !r->tombstone && r->expired(now_ms)) expired.emplace_back(k);
        });
        std::size_t freed = 0;
        for (const auto& k : expired) {
            keys_.update(k, [&](auto now) -> std::optional<std::string> {
                if (!now) return std::nullopt;
                auto r = read_versioned(*now);
                if (!r || r->tombstone || !r->expired(now_ms)) return std::nullopt;  // written again meanwhile
                ++freed;
                return make_versioned(r->version, true, {}, r->expires_at_ms);
            });
        }
        return freed;
    }

    // Records refused because their stamp was too far ahead of this host's clock.
    [[nodiscard]] std::uint64_t refused_ahead() const noexcept { return refused_ahead_.load(std::memory_order_relaxed); }

    // The record of what this replica holds for `key`, for re-sending it to a replica that missed it.
    [[nodiscard]] std::optional<std::string> record_of(protocol::table_id t, std::string_view key) const {
        auto v = (t == protocol::table_id::keys ? keys_ : files_).try_get(key);
        if (!v) return std::nullopt;
        std::string rec(1, static_cast<char>(t));
        rec += *v;
        return rec;
    }

    // Calls f(key, record) for every entry of both tables (tombstones included), for a replica
    // catching up. Holds one shard's lock at a time, and calls between() after each with none held.
    template <class F, class G>
    void for_each_record(F&& f, G&& between) const {
        std::string rec;
        for (auto t : {protocol::table_id::keys, protocol::table_id::files}) {
            (t == protocol::table_id::keys ? keys_ : files_).for_each([&](std::string_view k, std::string_view v) {
                rec.assign(1, static_cast<char>(t));
                rec += v;
                f(k, std::string_view(rec));
            }, between);
        }
    }
    template <class F>
    void for_each_record(F&& f) const {
        for_each_record(std::forward<F>(f), [] {});
    }

    // Adds each entry of one shard of one table to the digest of its slot, for the slots set in
    // `wanted`. A slot's digest is the XOR of its entries' hashes (key, table and the whole
    // versioned entry), so equal digests mean the same keys at the same versions, whatever order
    // they were written in.
    void add_digests_in(protocol::table_id t, std::size_t shard, const std::bitset<slot_count>& wanted,
                        std::vector<std::uint64_t>& digests) const {
        const auto now_ms = unix_ms_now();
        const auto horizon = purge_horizon();
        (t == protocol::table_id::keys ? keys_ : files_).for_each_in(shard, [&](std::string_view k, std::string_view v) {
            const auto slot = key_slot(k);
            if (!wanted.test(slot)) return;
            const auto seed = XXH3_64bits(k.data(), k.size()) + static_cast<std::uint64_t>(t);
            // A tombstone and an expired value count alike (by version): a holder that freed an
            // expired value agrees with one that has not yet.
            auto r = read_versioned(v);
            if (r && purgeable(*r, horizon)) return;  // purged here or soon, on every holder
            if (r && (r->tombstone || r->expired(now_ms)))
                digests[slot] ^= XXH3_64bits_withSeed(v.data(), version_size, seed ^ 1);
            else
                digests[slot] ^= XXH3_64bits_withSeed(v.data(), v.size(), seed);
        });
    }
    // Every wanted slot's digest (the others are 0), one shard's lock at a time.
    [[nodiscard]] std::vector<std::uint64_t> slot_digests(const std::bitset<slot_count>& wanted) const {
        std::vector<std::uint64_t> digests(slot_count, 0);
        for (auto t : {protocol::table_id::keys, protocol::table_id::files})
            for (std::size_t shard = 0; shard < Table::shard_count; ++shard) add_digests_in(t, shard, wanted, digests);
        return digests;
    }

    // The same for one shard (below Table::shard_count) of one table.
    template <class F>
    void for_each_record_in(protocol::table_id t, std::size_t shard, F&& f) const {
        std::string rec;
        // Entries past the purge horizon go too: a holder with an older value under one must
        // take it, or the digests never agree and the entry is never purged.
        (t == protocol::table_id::keys ? keys_ : files_).for_each_in(shard, [&](std::string_view k, std::string_view v) {
            rec.assign(1, static_cast<char>(t));
            rec += v;
            f(k, std::string_view(rec));
        });
    }

protected:
    // The entry of `key`, tombstone or expired or live; std::nullopt for none. The view points
    // into a per-thread copy, valid until this thread's next call.
    std::optional<versioned_view> entry(const Table& t, std::string_view key) const {
        if (!t.get(key, value_)) return std::nullopt;
        return read_versioned(value_);
    }

    // The live entry of `key`; std::nullopt for none or a tombstone. The view points into a
    // per-thread copy, valid until this thread's next call.
    std::optional<versioned_view> live(const Table& t, std::string_view key) const {
        auto v = entry(t, key);
        if (!v || v->tombstone || v->expired(unix_ms_now())) return std::nullopt;
        return v;
    }

    [[nodiscard]] bool too_far_ahead(const version& v) const noexcept { return v.stamp > stamp_now() + max_skew_us_; }

    Table& keys_;
    Table& files_;
    std::uint64_t max_skew_us_;
    std::atomic<std::uint64_t> purge_after_us_{0};
    std::atomic<std::uint64_t> refused_ahead_{0};
    inline static thread_local std::string value_;  // reused per worker: a get allocates nothing
};

}  // namespace dhtkit
