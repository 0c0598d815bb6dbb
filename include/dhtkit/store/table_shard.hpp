#pragma once
// One shard of locked_table: an open-addressing table of entry pointers whose buckets are one cache
// line each (Swiss-table style control bytes, matched in portable 64-bit arithmetic). Not
// thread-safe by itself: locked_table holds the shard's lock around every call.

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>

#include "dhtkit/concurrency/locks.hpp"

namespace dhtkit::detail::swiss {

inline constexpr std::size_t npos = ~std::size_t{0};
inline constexpr std::uint64_t empty = 0x80;
inline constexpr std::uint64_t deleted = 0xFE;
inline constexpr std::size_t ways = 7;  // slots per bucket: 8 bytes of control + 7 pointers = 64
inline constexpr std::uint64_t lsbs = 0x0001010101010101ull;  // the 7 used control bytes
inline constexpr std::uint64_t msbs = 0x0080808080808080ull;

// One cache line: a lookup reads the control word and the pointer it needs with one miss.
// Byte i of `ctrl` (counting from the least significant) describes slot i: 0..0x7f holds 7
// bits of the key's hash, 0x80 is empty, 0xFE a tombstone. The top byte is unused.
template <class Entry>
struct alignas(64) table_bucket {
    std::uint64_t ctrl = lsbs * empty;
    Entry* slot[ways] = {};
};

inline bool is_full(std::uint64_t c) noexcept { return (c & 0x80) == 0; }
inline std::uint64_t byte_at(std::uint64_t word, std::size_t i) noexcept {
    return (word >> (8 * i)) & 0xff;
}
inline void set_byte(std::uint64_t& word, std::size_t i, std::uint64_t v) noexcept {
    word = (word & ~(std::uint64_t{0xff} << (8 * i))) | (v << (8 * i));
}

// Bits at the high bit of each control byte that may equal `b` (a false positive is possible
// just above a true match; the key comparison settles it).
inline std::uint64_t match_byte(std::uint64_t word, std::uint64_t b) noexcept {
    std::uint64_t x = word ^ (lsbs * b);
    return (x - lsbs) & ~x & msbs;
}
inline std::uint64_t match_empty(std::uint64_t word) noexcept { return word & ~(word << 6) & msbs; }
inline std::uint64_t match_free(std::uint64_t word) noexcept { return word & msbs; }
inline std::size_t lowest(std::uint64_t bits) noexcept {
    return static_cast<std::size_t>(std::countr_zero(bits)) / 8;
}

template <class Entry, lock_policy Lock>
struct alignas(64) table_shard {
    using entry = Entry;
    using key_view = typename Entry::key_view;

    mutable Lock lock;
    std::unique_ptr<table_bucket<Entry>[]> buckets;
    std::size_t bucket_count = 0;  // a power of two; 0 before the first insert
    // Copies of the two fields above that may be read without the lock, only to prefetch a
    // bucket while the lock is being taken; a stale value costs a wasted prefetch, nothing more.
    std::atomic<const table_bucket<Entry>*> hint_buckets{nullptr};
    std::atomic<std::size_t> hint_mask{0};

    void prefetch(std::uint64_t h) const noexcept {
        if (const table_bucket<Entry>* b = hint_buckets.load(std::memory_order_relaxed))
            __builtin_prefetch(
                b + (static_cast<std::size_t>(h >> 7) & hint_mask.load(std::memory_order_relaxed)));
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
            const table_bucket<Entry>& bk = buckets[b];
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
            table_bucket<Entry>& bk = buckets[b];
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

    template <class Rehash>
    void insert_new(entry* e, std::uint64_t h, const Rehash& hash) {
        // Keep at least one free slot in eight, so that probes for absent keys stay short.
        if ((size + tombstones + 1) * 8 > bucket_count * ways * 7) {
            try {
                bool mostly_live = (size + 1) * 2 > bucket_count * ways;
                rehash(bucket_count == 0 ? 2 : mostly_live ? bucket_count * 2 : bucket_count, hash);
            } catch (...) {
                entry::destroy(e);
                throw;
            }
        }
        place(e, h);
    }

    template <class Rehash>
    void rehash(std::size_t new_count, const Rehash& hash) {
        auto old = std::exchange(buckets, std::make_unique<table_bucket<Entry>[]>(new_count));
        const std::size_t old_count = std::exchange(bucket_count, new_count);
        hint_buckets.store(buckets.get(), std::memory_order_relaxed);
        hint_mask.store(new_count - 1, std::memory_order_relaxed);
        size = 0;
        tombstones = 0;
        for (std::size_t b = 0; b < old_count; ++b)
            for (std::size_t i = 0; i < ways; ++i)
                if (is_full(byte_at(old[b].ctrl, i)))
                    place(old[b].slot[i], hash(old[b].slot[i]->key()));
    }

    // Gives back memory after many erasures: the fewest buckets (a power of two) that hold what
    // is left at the load insert_new keeps, or none when nothing is left.
    template <class Rehash>
    void shrink(const Rehash& hash) {
        if (size == 0) {
            clear();
            return;
        }
        std::size_t want = 2;
        while (size * 8 > want * ways * 4) want *= 2;  // at most half full
        if (want < bucket_count / 2) rehash(want, hash);
    }

    void erase_at(std::size_t pos) noexcept {
        table_bucket<Entry>& bk = buckets[pos / 8];
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

}  // namespace dhtkit::detail::swiss
