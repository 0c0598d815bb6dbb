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
#include <string_view>
#include <utility>
#include <vector>

#include "dhtkit/concurrency/locks.hpp"
#include "dhtkit/store/stable_hash.hpp"
#include "dhtkit/store/table_entry.hpp"
#include "dhtkit/store/table_shard.hpp"

namespace dhtkit {

namespace detail {
// Stand-ins for the callables the peer passes, so that the concept can name those calls.
template <class T>
struct leave_as_is {
    std::optional<typename T::mapped_type> operator()(std::optional<typename T::value_view>) const { return std::nullopt; }
};
template <class T>
struct always {
    bool operator()(typename T::value_view) const { return true; }
};
template <class T>
struct visit_entry {
    void operator()(typename T::key_view, typename T::value_view) const {}
};
struct between_shards {
    void operator()() const {}
};
}  // namespace detail

// What the peer needs from its table: lookups, a conditional update (the version check of a
// replicated write happens under the entry's lock), and walks: one shard, or all of them with a
// call between shards (catch-up streams a shard, then lets the connection drain, without holding
// any lock meanwhile; a snapshot writes out what it saw).
template <class T>
concept table = requires(T& t, const T& ct, typename T::key_view k, typename T::value_view v,
                         typename T::mapped_type& out, std::size_t shard) {
    { ct.get(k, out) } -> std::same_as<bool>;
    { ct.try_get(k) } -> std::same_as<std::optional<typename T::mapped_type>>;
    { t.put(k, v) } -> std::same_as<bool>;
    { t.update(k, detail::leave_as_is<T>{}) } -> std::same_as<bool>;
    { t.erase(k) } -> std::same_as<bool>;
    { t.erase_if(k, detail::always<T>{}) } -> std::same_as<bool>;
    t.shrink_shard(shard);
    { ct.contains(k) } -> std::same_as<bool>;
    { ct.size() } -> std::same_as<std::size_t>;
    { T::shard_count } -> std::convertible_to<std::size_t>;
    ct.for_each_in(shard, detail::visit_entry<T>{});
    ct.for_each(detail::visit_entry<T>{});
    ct.for_each(detail::visit_entry<T>{}, detail::between_shards{});
};

// What the peer's services need beyond `table`: one they can make themselves, of string keys and
// values (versioned records, stored as bytes), read and written through string_views. A type
// that passes this compiles in the peer.
template <class T>
concept string_table = table<T> && std::default_initializable<T> && std::same_as<typename T::mapped_type, std::string> &&
                       std::convertible_to<std::string_view, typename T::key_view> &&
                       std::convertible_to<typename T::key_view, std::string_view> &&
                       std::convertible_to<typename T::value_view, std::string_view>;

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
        s.insert_new(entry::make(key, value), h, rehash_fn());
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
            s.insert_new(entry::make(key, *next), h, rehash_fn());
        return true;
    }

    // Erases `key` if `pred(value_view)` holds for its value, under the write lock (a purge
    // that must not remove a value written since it looked). True when it did.
    template <class Pred>
    bool erase_if(key_view key, Pred&& pred) {
        const auto h = hash(key);
        shard& s = shard_for(h);
        std::lock_guard guard(s.lock);
        auto at = s.find(key, h);
        if (at == npos || !std::forward<Pred>(pred)(s.at(at)->value())) return false;
        s.erase_at(at);
        return true;
    }

    // Gives shard `index`'s spare index memory back after many erasures (see table_shard::shrink).
    void shrink_shard(std::size_t index) {
        auto& s = shards_[index];
        std::lock_guard guard(s.lock);
        s.shrink(rehash_fn());
    }

    bool erase(key_view key) {
        return erase_if(key, [](value_view) { return true; });
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
    using shard = detail::swiss::table_shard<entry, Lock>;
    static constexpr std::size_t npos = detail::swiss::npos;

    // What a shard calls to place entries again when it grows.
    auto rehash_fn() const noexcept {
        return [this](key_view k) { return hash(k); };
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
