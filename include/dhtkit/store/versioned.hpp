#pragma once
// Versioned entries: what replicas compare to settle on one answer. Every stored value carries the
// version of the write that made it and whether it is a deletion (a tombstone), so that a late or
// repeated copy of an older write can never undo a newer one: replicas keep the highest version
// (last writer wins, by version order rather than arrival order).
//
// A version is (stamp, writer, sequence), compared in that order. The stamp is microseconds since
// the epoch, moved past what it replaces; the writer is a stable id (a node id today — never a
// position in a list, which shifts when membership changes); the sequence orders one writer's
// writes within a stamp (0 while peers stamp writes; room for clients that stamp their own).
//
// In a table the entry is one string: [u64 stamp][u64 writer][u64 sequence][u8 flags][payload],
// integers little-endian, which keeps the packed string table.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace dhtkit {

inline constexpr std::size_t versioned_header_size = 25;

struct version {
    std::uint64_t stamp = 0;
    std::uint64_t writer = 0;
    std::uint64_t sequence = 0;
    friend auto operator<=>(const version&, const version&) = default;
};

struct versioned_view {
    dhtkit::version version;
    bool tombstone = false;
    std::string_view payload;
};

namespace detail {
inline void append_u64(std::string& out, std::uint64_t v) {
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
inline std::uint64_t read_u64(std::string_view in) noexcept {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = v << 8 | static_cast<unsigned char>(in[static_cast<std::size_t>(i)]);
    return v;
}
}  // namespace detail

inline void append_versioned(std::string& out, const version& v, bool tombstone, std::string_view payload) {
    detail::append_u64(out, v.stamp);
    detail::append_u64(out, v.writer);
    detail::append_u64(out, v.sequence);
    out.push_back(tombstone ? '\1' : '\0');
    out.append(payload);
}

inline std::string make_versioned(const version& v, bool tombstone, std::string_view payload) {
    std::string out;
    out.reserve(versioned_header_size + payload.size());
    append_versioned(out, v, tombstone, payload);
    return out;
}

// std::nullopt when `entry` is too short or its flags are unknown.
inline std::optional<versioned_view> read_versioned(std::string_view entry) noexcept {
    if (entry.size() < versioned_header_size) return std::nullopt;
    auto flags = static_cast<unsigned char>(entry[24]);
    if (flags > 1) return std::nullopt;
    return versioned_view{{detail::read_u64(entry), detail::read_u64(entry.substr(8)), detail::read_u64(entry.substr(16))},
                          flags == 1, entry.substr(versioned_header_size)};
}

// Hands out one writer's versions: a stamp above the clock, above every stamp it has made, and
// above the stamp of the version being replaced (a node whose clock runs behind still wins over
// what it overwrites).
class version_clock {
public:
    explicit version_clock(std::uint64_t writer) noexcept : writer_(writer) {}

    [[nodiscard]] version next(const version& replacing = {}) noexcept {
        auto now = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                                  std::chrono::system_clock::now().time_since_epoch())
                                                  .count());
        std::uint64_t floor = std::max(now, replacing.stamp + 1);
        std::uint64_t last = last_.load(std::memory_order_relaxed);
        std::uint64_t mine;
        do {
            mine = std::max(floor, last + 1);
        } while (!last_.compare_exchange_weak(last, mine, std::memory_order_relaxed));
        return {mine, writer_, 0};
    }
    [[nodiscard]] std::uint64_t writer() const noexcept { return writer_; }

private:
    std::uint64_t writer_;
    std::atomic<std::uint64_t> last_{0};
};

}  // namespace dhtkit
