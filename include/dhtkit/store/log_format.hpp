#pragma once
// The bytes of a write-ahead log and of a snapshot: a file header, then records back to back.
//
//   file:    magic (8 bytes: "DHTKLOG1" for a log, "DHTKSNP1" for a snapshot)
//   record:  length of the body (u32) | check of the length (u32: XXH3-64 of it, low half)
//            | XXH3-64 of the length and the body (u64) | body
//   body:    key length (u32) | key | the entry as the table's owner stores it (opaque here)
//
// Integers are little-endian. A length is trusted only with its own check, so a flipped length
// reads as the damage it is, not as a record running past the end of the file. A scan reads
// records until the bytes end; it tells a torn tail (a crash in mid-write: the file ends inside
// the last record's header or body, or the last record is whole but does not match its checksum,
// or nothing but zero bytes follow) from damage before the tail (anything else), and says where
// each starts.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>

#include "dhtkit/store/checksum.hpp"

namespace dhtkit {

inline constexpr std::string_view log_magic = "DHTKLOG1";
inline constexpr std::string_view snapshot_magic = "DHTKSNP1";
inline constexpr std::size_t log_header_size = 8;
inline constexpr std::size_t log_record_header = 4 + 4 + 8;        // length, its check, checksum
inline constexpr std::size_t log_record_overhead = log_record_header + 4;  // and the key length
// A body longer than this is taken for a corrupt length, not allocated or trusted.
inline constexpr std::size_t max_log_body = std::size_t{1} << 30;

namespace detail {
inline void put_u32(std::string& out, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}
inline std::uint32_t get_u32(const char* p) noexcept {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= std::uint32_t{static_cast<unsigned char>(p[i])} << (8 * i);
    return v;
}
inline std::uint64_t get_u64(const char* p) noexcept {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= std::uint64_t{static_cast<unsigned char>(p[i])} << (8 * i);
    return v;
}
inline std::uint64_t record_checksum(const char* length, std::string_view body) noexcept {
    checksum_stream h;
    h.update(length, 4);
    h.update(body.data(), body.size());
    return h.digest();
}
inline std::uint32_t length_check(const char* length) noexcept {
    checksum_stream h;
    h.update(length, 4);
    return static_cast<std::uint32_t>(h.digest());
}
}  // namespace detail

// Appends one record: `key` and its `entry`.
inline void append_log_record(std::string& out, std::string_view key, std::string_view entry) {
    const auto body_size = static_cast<std::uint32_t>(4 + key.size() + entry.size());
    const auto at = out.size();
    detail::put_u32(out, body_size);
    detail::put_u32(out, detail::length_check(out.data() + at));
    out.append(8, '\0');  // the checksum, once the body is there
    detail::put_u32(out, static_cast<std::uint32_t>(key.size()));
    out.append(key);
    out.append(entry);
    const auto sum = detail::record_checksum(out.data() + at, std::string_view(out).substr(at + log_record_header, body_size));
    for (int i = 0; i < 8; ++i) out[at + 8 + static_cast<std::size_t>(i)] = static_cast<char>(sum >> (8 * i));
}

struct log_scan {
    enum class end { clean, torn_tail, corrupt, bad_header };
    end how = end::clean;
    std::size_t records = 0;
    std::size_t valid_bytes = 0;  // the records before `how` (from the file's start, header included)
    std::string why;              // for torn_tail, corrupt and bad_header
};

// Reads the records of a whole file's bytes (`magic` first), calling `each(key, entry)` for every
// good record before the first bad one.
inline log_scan scan_log(std::string_view bytes, std::string_view magic,
                         const std::function<void(std::string_view, std::string_view)>& each) {
    log_scan s;
    if (bytes.size() < log_header_size || bytes.substr(0, log_header_size) != magic) {
        s.how = log_scan::end::bad_header;
        s.why = bytes.size() < log_header_size ? "shorter than its header" : "not a dhtkit file of this kind (wrong magic)";
        return s;
    }
    std::size_t at = log_header_size;
    s.valid_bytes = at;
    // Only zero bytes from `from` on: what a file system may show past the last write after a
    // power cut. Such a tail is torn, not damaged.
    auto zeros_from = [&](std::size_t from) {
        return std::all_of(bytes.begin() + static_cast<std::ptrdiff_t>(from), bytes.end(), [](char c) { return c == 0; });
    };
    auto ends = [&](log_scan::end how, const char* why) {
        s.how = how;
        s.why = why;
        return s;
    };
    while (at < bytes.size()) {
        const std::size_t left = bytes.size() - at;
        if (left < log_record_header) return ends(log_scan::end::torn_tail, "a record cut short in its header");
        const std::uint32_t body_size = detail::get_u32(bytes.data() + at);
        if (detail::get_u32(bytes.data() + at + 4) != detail::length_check(bytes.data() + at) || body_size < 4 ||
            body_size > max_log_body) {
            if (zeros_from(at)) return ends(log_scan::end::torn_tail, "zero bytes where a record should start");
            return ends(log_scan::end::corrupt, "a record length that does not match its check");
        }
        if (left < log_record_header + std::size_t{body_size})
            return ends(log_scan::end::torn_tail, "the last record cut short");
        const std::uint64_t sum = detail::get_u64(bytes.data() + at + 8);
        const std::string_view body = bytes.substr(at + log_record_header, body_size);
        if (detail::record_checksum(bytes.data() + at, body) != sum) {
            const auto next = at + log_record_header + body_size;
            if (next == bytes.size() || zeros_from(next))
                return ends(log_scan::end::torn_tail, "the last record does not match its checksum");
            return ends(log_scan::end::corrupt, "a record does not match its checksum");
        }
        const std::uint32_t key_size = detail::get_u32(body.data());
        if (key_size > body_size - 4) return ends(log_scan::end::corrupt, "a record's key runs past its end");
        each(body.substr(4, key_size), body.substr(4 + key_size));
        ++s.records;
        at += log_record_header + body_size;
        s.valid_bytes = at;
    }
    return s;
}

}  // namespace dhtkit
