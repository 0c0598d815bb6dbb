#pragma once
// Slots, as Redis Cluster has them: 16384 of them, a key's slot is CRC16-XMODEM of the key
// modulo 16384, and a hash tag ({user1}.a, {user1}.b) puts keys that share it in one slot. The
// rule is part of the wire contract: every peer, client and RESP front must compute the same slot,
// so it is exactly Redis's keyHashSlot, and there is no policy here to replace.
//
// The tag rule: if the key has a '{' and a '}' after it with at least one byte between, only the
// bytes between the first '{' and the first '}' after it are hashed; otherwise the whole key is.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace dhtkit {

using slot_t = std::uint16_t;
inline constexpr std::size_t slot_count = 16384;

// An inclusive range of slots, as CLUSTER SLOTS lists them.
struct slot_range {
    slot_t first = 0;
    slot_t last = 0;
    friend bool operator==(const slot_range&, const slot_range&) = default;
    [[nodiscard]] constexpr bool contains(slot_t s) const noexcept { return s >= first && s <= last; }
};

namespace detail {
constexpr std::array<std::uint16_t, 256> make_crc16_table() {
    std::array<std::uint16_t, 256> t{};
    for (unsigned i = 0; i < 256; ++i) {
        auto c = static_cast<std::uint16_t>(i << 8);
        for (int b = 0; b < 8; ++b) c = static_cast<std::uint16_t>(c & 0x8000 ? (c << 1) ^ 0x1021 : c << 1);
        t[i] = c;
    }
    return t;
}
inline constexpr auto crc16_table = make_crc16_table();
}  // namespace detail

// CRC16-CCITT in the XMODEM variant (polynomial 0x1021, initial value 0, no reflection).
[[nodiscard]] constexpr std::uint16_t crc16(std::string_view bytes) noexcept {
    std::uint16_t crc = 0;
    for (char ch : bytes)
        crc = static_cast<std::uint16_t>((crc << 8) ^
                                         detail::crc16_table[((crc >> 8) ^ static_cast<unsigned char>(ch)) & 0xff]);
    return crc;
}

// The part of `key` that decides its slot: the hash tag if it has one, else the whole key.
[[nodiscard]] constexpr std::string_view hash_tag(std::string_view key) noexcept {
    auto open = key.find('{');
    if (open == std::string_view::npos) return key;
    auto close = key.find('}', open + 1);
    if (close == std::string_view::npos || close == open + 1) return key;
    return key.substr(open + 1, close - open - 1);
}

[[nodiscard]] constexpr slot_t key_slot(std::string_view key) noexcept {
    return static_cast<slot_t>(crc16(hash_tag(key)) & (slot_count - 1));
}

}  // namespace dhtkit
