#pragma once
// Versioned entries: what replicas compare to settle on one answer. Every stored value carries the
// version of the write that made it and whether it is a deletion (a tombstone), so that a late or
// repeated copy of an older write can never undo a newer one: replicas keep the highest version
// (last writer wins, by version order rather than arrival order).
//
// In a table the entry is one string: [u64 version LE][u8 flags][payload], which keeps the packed
// string table and its memory figures. A version is (microseconds since the epoch << 8 | writer),
// so two peers never make the same version, and a writer's versions only grow.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace dhtkit {

inline constexpr std::size_t versioned_header_size = 9;

struct versioned_view {
    std::uint64_t version = 0;
    bool tombstone = false;
    std::string_view payload;
};

inline void append_versioned(std::string& out, std::uint64_t version, bool tombstone, std::string_view payload) {
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((version >> (8 * i)) & 0xff));
    out.push_back(tombstone ? '\1' : '\0');
    out.append(payload);
}

inline std::string make_versioned(std::uint64_t version, bool tombstone, std::string_view payload) {
    std::string out;
    out.reserve(versioned_header_size + payload.size());
    append_versioned(out, version, tombstone, payload);
    return out;
}

// std::nullopt when `entry` is too short or its flags are unknown.
inline std::optional<versioned_view> read_versioned(std::string_view entry) noexcept {
    if (entry.size() < versioned_header_size) return std::nullopt;
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = v << 8 | static_cast<unsigned char>(entry[static_cast<std::size_t>(i)]);
    auto flags = static_cast<unsigned char>(entry[8]);
    if (flags > 1) return std::nullopt;
    return versioned_view{v, flags == 1, entry.substr(versioned_header_size)};
}

// Hands out this writer's versions: above the clock, above every version it has made, and above
// the version being replaced (a peer whose clock runs behind still wins over what it overwrites).
class version_clock {
public:
    explicit version_clock(std::size_t writer) noexcept : writer_(static_cast<std::uint64_t>(writer & 0xff)) {}

    [[nodiscard]] std::uint64_t next(std::uint64_t replacing = 0) noexcept {
        auto now = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                                  std::chrono::system_clock::now().time_since_epoch())
                                                  .count());
        std::uint64_t floor = std::max(now, (replacing >> 8) + 1);
        std::uint64_t last = last_.load(std::memory_order_relaxed);
        std::uint64_t mine;
        do {
            mine = std::max(floor, last + 1);
        } while (!last_.compare_exchange_weak(last, mine, std::memory_order_relaxed));
        return mine << 8 | writer_;
    }

private:
    std::uint64_t writer_;
    std::atomic<std::uint64_t> last_{0};
};

}  // namespace dhtkit
