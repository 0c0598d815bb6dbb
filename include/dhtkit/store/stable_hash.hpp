#pragma once
// Hashes with a fixed definition. Placement must send a key to the same peer on every host,
// build and run, which std::hash does not promise; xxHash64 with seed 0 is specified bit for bit
// and independent of endianness.

#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace dhtkit {

// xxHash64 of the bytes, seed 0. Part of the wire contract: changing it moves every key.
[[nodiscard]] inline std::uint64_t stable_hash(std::string_view bytes) noexcept {
    return XXH64(bytes.data(), bytes.size(), 0);
}

// The table's default hash: XXH3 for byte strings (the fastest xxHash on short keys; it need not
// be stable), std::hash for everything else. The table mixes the result further.
template <class K>
struct table_hash {
    std::uint64_t operator()(const K& key) const noexcept { return std::hash<K>{}(key); }
};

template <>
struct table_hash<std::string> {
    std::uint64_t operator()(std::string_view key) const noexcept {
        return XXH3_64bits(key.data(), key.size());
    }
};

}  // namespace dhtkit
