#pragma once
// The bytes of a write-ahead log and of a snapshot: a file header, then records back to back.
//
//   file:    magic (8 bytes: "DHTKLOG1" for a log, "DHTKSNP1" for a snapshot)
//   record:  length of the body (u32) | XXH3-64 of the length and the body (u64) | body
//   body:    key length (u32) | key | the entry as the table's owner stores it (opaque here)
//
// Integers are little-endian. The checksum covers the length too, so a length torn or flipped is
// caught like a body is. A scan reads records until the bytes end; it tells a torn tail (the last
// record cut short, or whole but not matching its checksum with nothing after it: a crash in
// mid-write) from corruption before the tail (a bad record with more bytes after it), and says
// where each starts.

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
inline constexpr std::size_t log_record_overhead = 4 + 8 + 4;  // length, checksum, key length
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
inline std::uint64_t record_checksum(const char* length_and_body_without_sum, std::string_view body) noexcept {
    checksum_stream h;
    h.update(length_and_body_without_sum, 4);
    h.update(body.data(), body.size());
    return h.digest();
}
}  // namespace detail

// Appends one record: `key` and its `entry`.
inline void append_log_record(std::string& out, std::string_view key, std::string_view entry) {
    const auto body_size = static_cast<std::uint32_t>(4 + key.size() + entry.size());
    const auto at = out.size();
    detail::put_u32(out, body_size);
    out.append(8, '\0');  // the checksum, once the body is there
    detail::put_u32(out, static_cast<std::uint32_t>(key.size()));
    out.append(key);
    out.append(entry);
    const auto sum = detail::record_checksum(out.data() + at, std::string_view(out).substr(at + 12, body_size));
    for (int i = 0; i < 8; ++i) out[at + 4 + static_cast<std::size_t>(i)] = static_cast<char>(sum >> (8 * i));
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
    while (at < bytes.size()) {
        const std::size_t left = bytes.size() - at;
        if (left < 12) {
            s.how = log_scan::end::torn_tail;
            s.why = "a record cut short in its header";
            return s;
        }
        const std::uint32_t body_size = detail::get_u32(bytes.data() + at);
        const std::uint64_t sum = detail::get_u64(bytes.data() + at + 4);
        if (body_size < 4 || body_size > max_log_body) {
            // A length no writer makes: the tail only if nothing could follow it.
            s.how = left <= 12 + 4 ? log_scan::end::torn_tail : log_scan::end::corrupt;
            s.why = "a record length no writer makes";
            return s;
        }
        if (left < 12 + std::size_t{body_size}) {
            s.how = log_scan::end::torn_tail;
            s.why = "the last record cut short";
            return s;
        }
        const std::string_view body = bytes.substr(at + 12, body_size);
        if (detail::record_checksum(bytes.data() + at, body) != sum) {
            const bool last = at + 12 + body_size == bytes.size();
            s.how = last ? log_scan::end::torn_tail : log_scan::end::corrupt;
            s.why = last ? "the last record does not match its checksum" : "a record does not match its checksum";
            return s;
        }
        const std::uint32_t key_size = detail::get_u32(body.data());
        if (key_size > body_size - 4) {
            s.how = log_scan::end::corrupt;
            s.why = "a record's key runs past its end";
            return s;
        }
        each(body.substr(4, key_size), body.substr(4 + key_size));
        ++s.records;
        at += 12 + body_size;
        s.valid_bytes = at;
    }
    return s;
}

}  // namespace dhtkit
