#pragma once
// The tables the benchmarks compare, behind one small interface so that every contender does the
// same work: get copies the value into a caller-owned std::string, put overwrites a key.

#include <dhtkit/store/locked_table.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#ifdef DHTKIT_HAVE_LIBCUCKOO
#include <libcuckoo/cuckoohash_map.hh>
#endif
#ifdef DHTKIT_HAVE_TBB
#include <tbb/concurrent_hash_map.h>
#endif

namespace bench {

inline std::size_t key_count() {
    if (const char* env = std::getenv("DHTKIT_BENCH_KEYS")) return std::strtoull(env, nullptr, 10);
    return 1'000'000;
}

constexpr std::size_t key_size = 16;
constexpr std::size_t value_size = 100;

// "key" and 13 digits: 16 bytes, too long for std::string's inline buffer, as in the workload.
inline void make_key(std::uint64_t i, std::string& out) {
    out.resize(key_size);
    out[0] = 'k';
    out[1] = 'e';
    out[2] = 'y';
    for (std::size_t d = key_size; d > 3; --d) {
        out[d - 1] = static_cast<char>('0' + i % 10);
        i /= 10;
    }
}

inline std::string make_value(char fill) { return std::string(value_size, fill); }

// xorshift64*: cheap enough not to show in the measurement.
struct fast_random {
    std::uint64_t state;
    std::uint64_t next() noexcept {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        return state * 0x2545F4914F6CDD1Dull;
    }
};

struct dhtkit_table {
    static constexpr const char* name = "dhtkit";
    dhtkit::locked_table<std::string, std::string> table;
    bool get(const std::string& k, std::string& out) { return table.get(k, out); }
    void put(const std::string& k, const std::string& v) { table.put(k, v); }
};

// The seed's design: one table behind one std::mutex, with our storage.
struct seed_table {
    static constexpr const char* name = "dhtkit_one_mutex";
    dhtkit::locked_table<std::string, std::string, dhtkit::table_hash<std::string>, std::mutex, 1> table;
    bool get(const std::string& k, std::string& out) { return table.get(k, out); }
    void put(const std::string& k, const std::string& v) { table.put(k, v); }
};

struct std_mutex_table {
    static constexpr const char* name = "std_mutex";
    std::mutex lock;
    std::unordered_map<std::string, std::string> map;
    bool get(const std::string& k, std::string& out) {
        std::lock_guard g(lock);
        auto it = map.find(k);
        if (it == map.end()) return false;
        out.assign(it->second);
        return true;
    }
    void put(const std::string& k, const std::string& v) {
        std::lock_guard g(lock);
        map[k].assign(v);
    }
};

#ifdef DHTKIT_HAVE_LIBCUCKOO
struct libcuckoo_table {
    static constexpr const char* name = "libcuckoo";
    libcuckoo::cuckoohash_map<std::string, std::string> map;
    bool get(const std::string& k, std::string& out) { return map.find(k, out); }
    void put(const std::string& k, const std::string& v) { map.insert_or_assign(k, v); }
};
#endif

#ifdef DHTKIT_HAVE_TBB
struct tbb_table {
    static constexpr const char* name = "tbb";
    tbb::concurrent_hash_map<std::string, std::string> map;
    bool get(const std::string& k, std::string& out) {
        decltype(map)::const_accessor at;
        if (!map.find(at, k)) return false;
        out.assign(at->second);
        return true;
    }
    void put(const std::string& k, const std::string& v) {
        decltype(map)::accessor at;
        map.insert(at, k);
        at->second.assign(v);
    }
};
#endif

template <class Table>
void preload(Table& t, std::size_t n) {
    std::string key;
    const std::string value = make_value('v');
    for (std::size_t i = 0; i < n; ++i) {
        make_key(i, key);
        t.put(key, value);
    }
}

}  // namespace bench
