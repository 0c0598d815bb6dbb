#pragma once
// The table policy and locked_table, the thread-safe hash table that every worker of a peer
// shares (the seed's "resource manager").
//
// locked_table is split into Shards independent shards, each an open-addressing table behind its
// own lock: the hash picks the shard, so two threads contend only when they touch the same shard.
// One shard with std::mutex is exactly the seed's design; the default is 256 shards of
// shared_spinlock, whose readers never exclude each other.
//
// Inside a shard, a bucket is one cache line: a word of control bytes and 7 pointers to entries
// (Swiss-table style matching, in portable 64-bit arithmetic). A lookup reads the bucket, and
// follows a pointer only where 7 bits of the hash already match. Entries never move on rehash.
// The maximum load is 7/8.

#include <algorithm>
#include <atomic>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "dhtkit/concurrency/locks.hpp"
#include "dhtkit/store/stable_hash.hpp"
#include "dhtkit/store/table_entry.hpp"

namespace dhtkit {

namespace detail {
// Stand-ins for the callables the peer passes, so that the concept can name those calls.
template <class T>
struct leave_as_is {
    std::optional<typename T::mapped_type> operator()(std::optional<typename T::value_view>) const { return std::nullopt; }
};
template <class T>
struct visit_entry {
    void operator()(typename T::key_view, typename T::value_view) const {}
};
}  // namespace detail

// What the peer needs from its table: lookups, a conditional update (the version check of a
// replicated write happens under the entry's lock), and a walk one shard at a time (catch-up
// streams a shard, then lets the connection drain, without holding any lock meanwhile).
template <class T>
concept table = requires(T& t, const T& ct, typename T::key_view k, typename T::value_view v,
                         typename T::mapped_type& out, std::size_t shard) {
    { ct.get(k, out) } -> std::same_as<bool>;
    { ct.try_get(k) } -> std::same_as<std::optional<typename T::mapped_type>>;
    { t.put(k, v) } -> std::same_as<bool>;
    { t.update(k, detail::leave_as_is<T>{}) } -> std::same_as<bool>;
    { t.erase(k) } -> std::same_as<bool>;
    { ct.contains(k) } -> std::same_as<bool>;
    { ct.size() } -> std::same_as<std::size_t>;
    { T::shard_count } -> std::convertible_to<std::size_t>;
    ct.for_each_in(shard, detail::visit_entry<T>{});
    ct.for_each(detail::visit_entry<T>{});
};

template <class K, class V, class Hash = table_hash<K>, lock_policy Lock = shared_spinlock,
          std::size_t Shards = 256>
    requires(Shards > 0 && std::has_single_bit(Shards))
class locked_table {
    using entry = table_entry<K, V>;

public:
    using key_type = K;
    using mapped_type = V;
    using key_view = typename entry::key_view;
    using value_view = typename entry::value_view;
    static constexpr std::size_t shard_count = Shards;

    locked_table() = default;
    locked_table(const locked_table&) = delete;
    locked_table& operator=(const locked_table&) = delete;
    ~locked_table() {
        for (auto& s : shards_) s.clear();
    }

    // Copies the value into `out` (reusing its storage); false when absent.
    bool get(key_view key, V& out) const {
        const auto h = hash(key);
        const shard& s = shard_for(h);
        s.prefetch(h);
        read_guard guard(s.lock);
        auto at = s.find(key, h);
        if (at == npos) return false;
        s.at(at)->copy_value_to(out);
        return true;
    }

    std::optional<V> try_get(key_view key) const {
        V out{};
        if (!get(key, out)) return std::nullopt;
        return out;
    }

    bool contains(key_view key) const {
        const auto h = hash(key);
        const shard& s = shard_for(h);
        read_guard guard(s.lock);
        return s.find(key, h) != npos;
    }

    // Inserts or overwrites; true when the key was new.
    bool put(key_view key, value_view value) {
        const auto h = hash(key);
        shard& s = shard_for(h);
        s.prefetch(h);
        std::lock_guard guard(s.lock);
        if (auto at = s.find(key, h); at != npos) {
            s.at(at) = entry::assign(s.at(at), value);
            return false;
        }
        s.insert_new(entry::make(key, value), h, *this);
        return true;
    }

    // Calls `f(std::optional<value_view>)` with the current value under the write lock and
    // stores what it returns: std::nullopt to leave the entry as it is, a value to store. Lets a
    // caller compare-and-set (a version check) without a window between reading and writing.
    template <class F>
    bool update(key_view key, F&& f) {
        const auto h = hash(key);
        shard& s = shard_for(h);
        std::lock_guard guard(s.lock);
        auto at = s.find(key, h);
        std::optional<value_view> current;
        if (at != npos) current.emplace(s.at(at)->value());
        auto next = std::forward<F>(f)(current);
        if (!next) return false;
        if (at != npos)
            s.at(at) = entry::assign(s.at(at), *next);
        else
            s.insert_new(entry::make(key, *next), h, *this);
        return true;
    }

    bool erase(key_view key) {
        const auto h = hash(key);
        shard& s = shard_for(h);
        std::lock_guard guard(s.lock);
        auto at = s.find(key, h);
        if (at == npos) return false;
        s.erase_at(at);
        return true;
    }

    // Exact when no writer runs concurrently; otherwise a value the size passed through.
    [[nodiscard]] std::size_t size() const {
        std::size_t n = 0;
        for (const auto& s : shards_) {
            read_guard guard(s.lock);
            n += s.size;
        }
        return n;
    }

    // Calls `f(key_view, value_view)` for every entry, one shard at a time under its read lock:
    // each shard is seen consistently, the table as a whole is not a single point in time.
    // `f` must not call back into the table.
    template <class F>
    void for_each(F&& f) const {
        for_each(std::forward<F>(f), [] {});
    }

    // The entries of shard `index` (below shard_count) under its read lock.
    template <class F>
    void for_each_in(std::size_t index, F&& f) const {
        const auto& s = shards_[index];
        read_guard guard(s.lock);
        s.for_each(f);
    }

    // The same, calling `between()` after each shard with no lock held: where a caller streams
    // what it saw so far (to a socket, say) without holding up writers.
    template <class F, class G>
    void for_each(F&& f, G&& between) const {
        for (const auto& s : shards_) {
            {
                read_guard guard(s.lock);
                s.for_each(f);
            }
            between();
        }
    }

    [[nodiscard]] std::vector<std::pair<K, V>> snapshot() const {
        std::vector<std::pair<K, V>> out;
        for_each([&](key_view k, value_view v) { out.emplace_back(K(k), V(v)); });
        return out;
    }

    void clear() {
        for (auto& s : shards_) {
            std::lock_guard guard(s.lock);
            s.clear();
        }
    }

private:
    static constexpr std::size_t npos = ~std::size_t{0};
    static constexpr std::uint64_t empty = 0x80;
    static constexpr std::uint64_t deleted = 0xFE;
    static constexpr std::size_t ways = 7;  // slots per bucket: 8 bytes of control + 7 pointers = 64
    static constexpr std::uint64_t lsbs = 0x0001010101010101ull;  // the 7 used control bytes
    static constexpr std::uint64_t msbs = 0x0080808080808080ull;

    // One cache line: a lookup reads the control word and the pointer it needs with one miss.
    // Byte i of `ctrl` (counting from the least significant) describes slot i: 0..0x7f holds 7
    // bits of the key's hash, 0x80 is empty, 0xFE a tombstone. The top byte is unused.
    struct alignas(64) bucket {
        std::uint64_t ctrl = lsbs * empty;
        entry* slot[ways] = {};
    };

    static bool is_full(std::uint64_t c) noexcept { return (c & 0x80) == 0; }
    static std::uint64_t byte_at(std::uint64_t word, std::size_t i) noexcept { return (word >> (8 * i)) & 0xff; }
    static void set_byte(std::uint64_t& word, std::size_t i, std::uint64_t v) noexcept {
        word = (word & ~(std::uint64_t{0xff} << (8 * i))) | (v << (8 * i));
    }

    // Bits at the high bit of each control byte that may equal `b` (a false positive is possible
    // just above a true match; the key comparison settles it).
    static std::uint64_t match_byte(std::uint64_t word, std::uint64_t b) noexcept {
        std::uint64_t x = word ^ (lsbs * b);
        return (x - lsbs) & ~x & msbs;
    }
    static std::uint64_t match_empty(std::uint64_t word) noexcept { return word & ~(word << 6) & msbs; }
    static std::uint64_t match_free(std::uint64_t word) noexcept { return word & msbs; }
    static std::size_t lowest(std::uint64_t bits) noexcept {
        return static_cast<std::size_t>(std::countr_zero(bits)) / 8;
    }

    // A final mix, so that a weak user hash (std::hash of an integer is the identity) still
    // spreads over shards, buckets and control bytes.
    std::uint64_t hash(key_view key) const noexcept {
        std::uint64_t h = hasher_(key);
        h ^= h >> 33;
        h *= 0xff51afd7ed558ccdull;
        h ^= h >> 33;
        h *= 0xc4ceb9fe1a85ec53ull;
        h ^= h >> 33;
        return h;
    }

    struct alignas(64) shard {
        mutable Lock lock;
        std::unique_ptr<bucket[]> buckets;
        std::size_t bucket_count = 0;  // a power of two; 0 before the first insert
        // Copies of the two fields above that may be read without the lock, only to prefetch a
        // bucket while the lock is being taken; a stale value costs a wasted prefetch, nothing more.
        std::atomic<const bucket*> hint_buckets{nullptr};
        std::atomic<std::size_t> hint_mask{0};

        void prefetch(std::uint64_t h) const noexcept {
            if (const bucket* b = hint_buckets.load(std::memory_order_relaxed))
                __builtin_prefetch(b + (static_cast<std::size_t>(h >> 7) & hint_mask.load(std::memory_order_relaxed)));
        }
        std::size_t size = 0;
        std::size_t tombstones = 0;

        // A position is bucket * 8 + slot.
        entry*& at(std::size_t pos) noexcept { return buckets[pos / 8].slot[pos % 8]; }
        entry* at(std::size_t pos) const noexcept { return buckets[pos / 8].slot[pos % 8]; }

        static std::uint64_t tag(std::uint64_t h) noexcept { return h & 0x7f; }
        std::size_t first_bucket(std::uint64_t h) const noexcept {
            return static_cast<std::size_t>(h >> 7) & (bucket_count - 1);
        }

        std::size_t find(key_view key, std::uint64_t h) const {
            if (bucket_count == 0) return npos;
            std::size_t b = first_bucket(h);
            for (std::size_t step = 1;; ++step) {
                const bucket& bk = buckets[b];
                const std::uint64_t word = bk.ctrl;
                for (auto m = match_byte(word, tag(h)); m != 0; m &= m - 1) {
                    std::size_t i = lowest(m);
                    if (byte_at(word, i) != tag(h)) continue;
                    bk.slot[i]->prefetch();
                    if (bk.slot[i]->key() == key) return b * 8 + i;
                }
                if (match_empty(word) != 0) return npos;
                b = (b + step) & (bucket_count - 1);  // triangular steps visit every bucket
            }
        }

        void place(entry* e, std::uint64_t h) noexcept {
            std::size_t b = first_bucket(h);
            for (std::size_t step = 1;; ++step) {
                bucket& bk = buckets[b];
                if (auto m = match_free(bk.ctrl); m != 0) {
                    std::size_t i = lowest(m);
                    if (byte_at(bk.ctrl, i) == deleted) --tombstones;
                    set_byte(bk.ctrl, i, tag(h));
                    bk.slot[i] = e;
                    ++size;
                    return;
                }
                b = (b + step) & (bucket_count - 1);
            }
        }

        void insert_new(entry* e, std::uint64_t h, const locked_table& owner) {
            // Keep at least one free slot in eight, so that probes for absent keys stay short.
            if ((size + tombstones + 1) * 8 > bucket_count * ways * 7) {
                try {
                    bool mostly_live = (size + 1) * 2 > bucket_count * ways;
                    rehash(bucket_count == 0 ? 2 : mostly_live ? bucket_count * 2 : bucket_count, owner);
                } catch (...) {
                    entry::destroy(e);
                    throw;
                }
            }
            place(e, h);
        }

        void rehash(std::size_t new_count, const locked_table& owner) {
            auto old = std::exchange(buckets, std::make_unique<bucket[]>(new_count));
            const std::size_t old_count = std::exchange(bucket_count, new_count);
            hint_buckets.store(buckets.get(), std::memory_order_relaxed);
            hint_mask.store(new_count - 1, std::memory_order_relaxed);
            size = 0;
            tombstones = 0;
            for (std::size_t b = 0; b < old_count; ++b)
                for (std::size_t i = 0; i < ways; ++i)
                    if (is_full(byte_at(old[b].ctrl, i)))
                        place(old[b].slot[i], owner.hash(old[b].slot[i]->key()));
        }

        void erase_at(std::size_t pos) noexcept {
            bucket& bk = buckets[pos / 8];
            entry::destroy(bk.slot[pos % 8]);
            bk.slot[pos % 8] = nullptr;
            // A bucket that still has an empty slot never made a probe move on past it, so the
            // slot can go back to empty; otherwise it must stay a tombstone.
            if (match_empty(bk.ctrl) != 0) {
                set_byte(bk.ctrl, pos % 8, empty);
            } else {
                set_byte(bk.ctrl, pos % 8, deleted);
                ++tombstones;
            }
            --size;
        }

        template <class F>
        void for_each(F& f) const {
            for (std::size_t b = 0; b < bucket_count; ++b)
                for (std::size_t i = 0; i < ways; ++i)
                    if (is_full(byte_at(buckets[b].ctrl, i)))
                        f(buckets[b].slot[i]->key(), buckets[b].slot[i]->value());
        }

        void clear() noexcept {
            for (std::size_t b = 0; b < bucket_count; ++b)
                for (std::size_t i = 0; i < ways; ++i)
                    if (is_full(byte_at(buckets[b].ctrl, i))) entry::destroy(buckets[b].slot[i]);
            hint_buckets.store(nullptr, std::memory_order_relaxed);
            buckets.reset();
            bucket_count = size = tombstones = 0;
        }
    };

    shard& shard_for(std::uint64_t h) noexcept { return shards_[shard_index(h)]; }
    const shard& shard_for(std::uint64_t h) const noexcept { return shards_[shard_index(h)]; }
    static std::size_t shard_index(std::uint64_t h) noexcept {
        if constexpr (Shards == 1) return 0;
        else return static_cast<std::size_t>(h >> (64 - std::countr_zero(Shards)));
    }

    shard shards_[Shards];
    [[no_unique_address]] Hash hasher_{};
};

}  // namespace dhtkit
