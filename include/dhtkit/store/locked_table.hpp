#pragma once
// The table policy and locked_table, the thread-safe hash table that every worker of a peer
// shares (the seed's "resource manager").
//
// locked_table is split into Shards independent shards, each an open-addressing table behind its
// own lock: the hash picks the shard, so two threads contend only when they touch the same shard.
// One shard with std::mutex is exactly the seed's design; the default is 256 shards of
// shared_spinlock, whose readers never exclude each other.
//
// Inside a shard, slots hold a pointer to the entry plus one control byte each, probed eight at a
// time (Swiss-table style, in portable 64-bit words): a lookup reads the control bytes of a group,
// and follows a pointer only where 7 bits of the hash already match. Entries never move on
// rehash. The maximum load is 7/8.

#include <algorithm>
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

// What the peer needs from its table.
template <class T>
concept table = requires(T& t, const T& ct, typename T::key_view k, typename T::value_view v,
                         typename T::mapped_type& out) {
    { ct.get(k, out) } -> std::same_as<bool>;
    { ct.try_get(k) } -> std::same_as<std::optional<typename T::mapped_type>>;
    { t.put(k, v) } -> std::same_as<bool>;
    { t.erase(k) } -> std::same_as<bool>;
    { ct.contains(k) } -> std::same_as<bool>;
    { ct.size() } -> std::same_as<std::size_t>;
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
        read_guard guard(s.lock);
        auto at = s.find(key, h);
        if (at == npos) return false;
        s.slots[at]->copy_value_to(out);
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
        std::lock_guard guard(s.lock);
        if (auto at = s.find(key, h); at != npos) {
            s.slots[at] = entry::assign(s.slots[at], value);
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
        if (at != npos) current.emplace(s.slots[at]->value());
        auto next = std::forward<F>(f)(current);
        if (!next) return false;
        if (at != npos)
            s.slots[at] = entry::assign(s.slots[at], *next);
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
        for (const auto& s : shards_) {
            read_guard guard(s.lock);
            for (std::size_t i = 0; i < s.capacity; ++i)
                if (is_full(s.ctrl[i])) f(s.slots[i]->key(), s.slots[i]->value());
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
    static constexpr std::uint8_t empty = 0x80;
    static constexpr std::uint8_t deleted = 0xFE;
    static constexpr std::size_t group = 8;
    static constexpr std::uint64_t lsbs = 0x0101010101010101ull;
    static constexpr std::uint64_t msbs = 0x8080808080808080ull;

    static bool is_full(std::uint8_t c) noexcept { return (c & 0x80) == 0; }

    // Bits set at the high bit of each byte of `word` that may equal `b` (a false positive is
    // possible just above a true match; the key comparison settles it).
    static std::uint64_t match_byte(std::uint64_t word, std::uint8_t b) noexcept {
        std::uint64_t x = word ^ (lsbs * b);
        return (x - lsbs) & ~x & msbs;
    }
    static std::uint64_t match_empty(std::uint64_t word) noexcept {
        return word & ~(word << 6) & msbs;
    }
    static std::uint64_t match_free(std::uint64_t word) noexcept { return word & msbs; }
    static std::size_t lowest(std::uint64_t bits) noexcept {
        return static_cast<std::size_t>(std::countr_zero(bits)) / 8;
    }

    // A final mix, so that a weak user hash (std::hash of an integer is the identity) still
    // spreads over shards, groups and control bytes.
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
        std::unique_ptr<std::uint8_t[]> ctrl_block;
        std::unique_ptr<entry*[]> slot_block;
        std::uint8_t* ctrl = nullptr;
        entry** slots = nullptr;
        std::size_t capacity = 0;  // a power of two, at least one group; 0 before the first insert
        std::size_t size = 0;
        std::size_t tombstones = 0;

        static std::uint8_t tag(std::uint64_t h) noexcept { return static_cast<std::uint8_t>(h & 0x7f); }
        std::size_t first_group(std::uint64_t h) const noexcept {
            return static_cast<std::size_t>(h >> 7) & (capacity / group - 1);
        }
        std::uint64_t load_group(std::size_t g) const noexcept {
            std::uint64_t word;
            std::memcpy(&word, ctrl + g * group, group);
            if constexpr (std::endian::native == std::endian::big) word = __builtin_bswap64(word);
            return word;
        }

        std::size_t find(key_view key, std::uint64_t h) const {
            if (capacity == 0) return npos;
            const std::size_t mask = capacity / group - 1;
            std::size_t g = first_group(h);
            for (std::size_t step = 1;; ++step) {
                const std::uint64_t word = load_group(g);
                for (auto m = match_byte(word, tag(h)); m != 0; m &= m - 1) {
                    std::size_t at = g * group + lowest(m);
                    if (is_full(ctrl[at]) && slots[at]->key() == key) return at;
                }
                if (match_empty(word) != 0) return npos;
                g = (g + step) & mask;  // triangular steps visit every group of a power-of-two table
            }
        }

        void place(entry* e, std::uint64_t h) noexcept {
            const std::size_t mask = capacity / group - 1;
            std::size_t g = first_group(h);
            for (std::size_t step = 1;; ++step) {
                if (auto m = match_free(load_group(g)); m != 0) {
                    std::size_t at = g * group + lowest(m);
                    if (ctrl[at] == deleted) --tombstones;
                    ctrl[at] = tag(h);
                    slots[at] = e;
                    ++size;
                    return;
                }
                g = (g + step) & mask;
            }
        }

        void insert_new(entry* e, std::uint64_t h, const locked_table& owner) {
            if ((size + tombstones + 1) * 8 > capacity * 7) {
                try {
                    rehash(size * 2 + 2 >= capacity ? std::max(capacity * 2, 2 * group) : capacity,
                           owner);
                } catch (...) {
                    entry::destroy(e);
                    throw;
                }
            }
            place(e, h);
        }

        void rehash(std::size_t new_capacity, const locked_table& owner) {
            auto new_ctrl = std::make_unique<std::uint8_t[]>(new_capacity);
            auto new_slots = std::make_unique<entry*[]>(new_capacity);
            std::memset(new_ctrl.get(), empty, new_capacity);
            auto old_ctrl = std::move(ctrl_block);
            auto old_slots = std::move(slot_block);
            const std::size_t old_capacity = capacity;
            ctrl_block = std::move(new_ctrl);
            slot_block = std::move(new_slots);
            ctrl = ctrl_block.get();
            slots = slot_block.get();
            capacity = new_capacity;
            size = 0;
            tombstones = 0;
            for (std::size_t i = 0; i < old_capacity; ++i)
                if (is_full(old_ctrl[i])) place(old_slots[i], owner.hash(old_slots[i]->key()));
        }

        void erase_at(std::size_t at) noexcept {
            entry::destroy(slots[at]);
            slots[at] = nullptr;
            // A group that still has an empty slot never made a probe move on past it, so the
            // slot can go back to empty; otherwise it must stay a tombstone.
            if (match_empty(load_group(at / group)) != 0) {
                ctrl[at] = empty;
            } else {
                ctrl[at] = deleted;
                ++tombstones;
            }
            --size;
        }

        void clear() noexcept {
            for (std::size_t i = 0; i < capacity; ++i)
                if (is_full(ctrl[i])) entry::destroy(slots[i]);
            ctrl_block.reset();
            slot_block.reset();
            ctrl = nullptr;
            slots = nullptr;
            capacity = size = tombstones = 0;
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
