#pragma once
// Versioned entries: what replicas compare to settle on one answer. Every stored value carries the
// version of the write that made it and whether it is a deletion (a tombstone), so that a late or
// repeated copy of an older write can never undo a newer one: replicas keep the highest version
// (last writer wins, by version order rather than arrival order).
//
// A version is (stamp, writer, sequence), compared in that order. The stamp is microseconds since
// the epoch, moved past what it replaces (a hybrid logical clock); the writer is a stable id — a
// client's id for the writes a client stamps, a node's id for the ones a node stamps, never a
// position in a list, which shifts when membership changes; the sequence counts one writer's
// writes. A version is fixed when the write is issued and travels unchanged through retries,
// failover and replication.
//
// In a table the entry is one string: [u64 stamp][u64 writer][u64 sequence][u8 flags][payload],
// integers little-endian, which keeps the packed string table. Flags: 1 a tombstone, 2 the value
// expires: the payload then starts with the moment it does (u64 milliseconds since the Unix epoch,
// an absolute time, so that every holder drops it at once) and the value follows.

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
    std::uint64_t expires_at_ms = 0;  // 0: never

    // A value whose moment has come reads as none, on every holder.
    [[nodiscard]] bool expired(std::uint64_t now_ms) const noexcept { return expires_at_ms != 0 && now_ms >= expires_at_ms; }
};

// Milliseconds since the Unix epoch: the unit of an expiry.
[[nodiscard]] inline std::uint64_t unix_ms_now() noexcept {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

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

inline constexpr std::size_t version_size = 24;

// A version alone, as a stamped request carries it before its payload.
inline void append_version(std::string& out, const version& v) {
    detail::append_u64(out, v.stamp);
    detail::append_u64(out, v.writer);
    detail::append_u64(out, v.sequence);
}
[[nodiscard]] inline std::optional<version> read_version(std::string_view in) noexcept {
    if (in.size() < version_size) return std::nullopt;
    return version{detail::read_u64(in), detail::read_u64(in.substr(8)), detail::read_u64(in.substr(16))};
}

inline void append_versioned(std::string& out, const version& v, bool tombstone, std::string_view payload,
                             std::uint64_t expires_at_ms = 0) {
    append_version(out, v);
    out.push_back(static_cast<char>((tombstone ? 1 : 0) | (expires_at_ms ? 2 : 0)));
    if (expires_at_ms) detail::append_u64(out, expires_at_ms);
    out.append(payload);
}

inline std::string make_versioned(const version& v, bool tombstone, std::string_view payload, std::uint64_t expires_at_ms = 0) {
    std::string out;
    out.reserve(versioned_header_size + 8 + payload.size());
    append_versioned(out, v, tombstone, payload, expires_at_ms);
    return out;
}

// std::nullopt when `entry` is too short or its flags are unknown.
inline std::optional<versioned_view> read_versioned(std::string_view entry) noexcept {
    if (entry.size() < versioned_header_size) return std::nullopt;
    auto flags = static_cast<unsigned char>(entry[version_size]);
    if (flags > 3) return std::nullopt;
    versioned_view v{*read_version(entry), (flags & 1) != 0, entry.substr(versioned_header_size)};
    if (flags & 2) {
        if (v.payload.size() < 8) return std::nullopt;
        v.expires_at_ms = detail::read_u64(v.payload);
        v.payload.remove_prefix(8);
        if (v.expires_at_ms == 0) return std::nullopt;  // written as no flag
    }
    return v;
}

// Microseconds since the epoch: the unit of a version's stamp.
[[nodiscard]] inline std::uint64_t stamp_now() noexcept {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

// Hands out one writer's versions: a stamp above the clock, above every stamp it has made or seen,
// and above the stamp of the version being replaced (a node whose clock runs behind still wins
// over what it overwrites). Nodes stamp the writes they take unstamped; clients stamp their own.
class version_clock {
public:
    explicit version_clock(std::uint64_t writer) noexcept : writer_(writer) {}

    [[nodiscard]] version next(const version& replacing = {}) noexcept {
        std::uint64_t floor = std::max(stamp_now(), replacing.stamp + 1);
        std::uint64_t last = last_.load(std::memory_order_relaxed);
        std::uint64_t mine;
        do {
            mine = std::max(floor, last + 1);
        } while (!last_.compare_exchange_weak(last, mine, std::memory_order_relaxed));
        return {mine, writer_, sequence_.fetch_add(1, std::memory_order_relaxed)};
    }

    // A hybrid logical clock moves past every version it has seen, so that a write issued after
    // reading a version is stamped above it, whatever this host's clock says.
    void observe(const version& seen) noexcept {
        std::uint64_t last = last_.load(std::memory_order_relaxed);
        while (last < seen.stamp && !last_.compare_exchange_weak(last, seen.stamp, std::memory_order_relaxed)) {
        }
    }
    [[nodiscard]] std::uint64_t writer() const noexcept { return writer_; }

private:
    std::uint64_t writer_;
    std::atomic<std::uint64_t> last_{0};
    std::atomic<std::uint64_t> sequence_{0};
};

}  // namespace dhtkit
