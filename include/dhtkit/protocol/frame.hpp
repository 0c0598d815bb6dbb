#pragma once
// dhtkit's wire frame: a fixed 24-byte header in explicit little-endian, then the key bytes, then
// the value bytes. Encoded and decoded field by field, never by copying a struct's memory, so the
// format is the same on every compiler and host. docs/protocol.md is the reference.
//
//   offset size field
//        0    2 magic       0xD7 0x4B ("dhtkit")
//        2    1 version     2
//        3    1 opcode
//        4    1 flags
//        5    1 status      0 in requests
//        6    2 reserved    0
//        8    8 request id  chosen by the client, echoed in the reply
//       16    4 key length
//       20    4 value length

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace dhtkit::protocol {

inline constexpr std::size_t header_size = 24;
inline constexpr std::uint16_t magic = 0x4BD7;
inline constexpr std::uint8_t version = 2;

// The one frame-limit rule, for every reader of frames: a key up to the key limit, a value up to
// the value limit plus room for what travels beside a value (a record's version header, a holder
// list, an error text). A put's value is held to the value limit itself by the index service.
inline constexpr std::size_t frame_allowance = 64 * 1024;
inline constexpr std::size_t max_file_name_bytes = 255;

enum class opcode : std::uint8_t {
    ping = 1,
    put = 2,
    get = 3,
    del = 4,
    register_file = 5,    // on NAME's home: add a holder record (value) for file NAME (key)
    unregister_file = 6,  // on NAME's home: drop the holder whose peer id is the value
    search = 7,           // on NAME's home: the holder records
    fetch = 8,            // on a holder: the file's size and checksum, then its bytes
    stats = 9,            // the serving peer's counters, as "name=value" lines
    announce = 10,        // to peer N: register file NAME from your own shared folder
    withdraw = 11,        // to peer N: unregister your copy of file NAME
    replicate = 12,       // replica to replica: apply this versioned record of KEY if it is newer
    sync = 13,            // to a holder: stream every record of the slot ranges asked for (catch-up)
    replicate_file = 14,  // to a backup: copy file NAME from the holder in the value, then hold it
    hello = 15,           // first on a connection: the digest of the sender's cluster map, and its source
    lease = 16,           // to a node sharing slots: grant the asker (node id in the value) a read lease
    auth = 17,            // the client password (value), when the peer has one: then anything else may follow
    expire = 18,          // on KEY's holder: its value expires at the u64 (ms since the epoch) in the value; 0: never
    map = 19,             // the answering node's cluster map: its epoch, nodes and slot table
    leave = 20,           // live membership: the answering node hands its slots over and exits
};

inline constexpr std::uint8_t max_opcode = 20;

// Header flag of a sync reply: more records follow under the same request id.
inline constexpr std::uint8_t flag_more = 1;
// Header flag of a put or del: the value starts with the write's version (24 bytes: stamp, writer,
// sequence), fixed by the client. Of a get: answer with the version before the value.
inline constexpr std::uint8_t flag_stamped = 2;
// Header flag of a get or search from another holder (a majority read): answer with this node's
// own record of the key (table byte, version header, value), whatever its leases say.
inline constexpr std::uint8_t flag_own_copy = 4;
// On a sync request: after the ranges, the asker's digest of each slot it asks for (u64 each, in
// slot order), so that the answer leaves out the slots that already agree.
inline constexpr std::uint8_t flag_digests = 16;
// On a put: after the version (of a stamped put), the write's options (protocol/messages.hpp
// put_options: expiry, if absent, if present, keep the expiry, answer the old value); the reply's
// value then says what happened. On a get: answer with the value's expiry before the value.
inline constexpr std::uint8_t flag_options = 32;

enum class status : std::uint8_t {
    ok = 0,
    not_found = 1,
    bad_request = 2,     // malformed frame (closed after the reply) or malformed payload (left open)
    too_large = 3,       // key or value over a limit: closed when over the frame limit, else left open
    unknown_opcode = 4,  // well-formed, but not an operation this peer knows
    refused = 5,         // e.g. a file name outside the shared folder
    unavailable = 6,     // the peer cannot do it now (a holder down, a file gone)
    internal_error = 7,
    moved = 8,           // live membership: the key's slot is held elsewhere in the answering node's newer map
};

[[nodiscard]] constexpr std::string_view to_string(status s) noexcept {
    switch (s) {
        case status::ok: return "ok";
        case status::not_found: return "not found";
        case status::bad_request: return "bad request";
        case status::too_large: return "too large";
        case status::unknown_opcode: return "unknown opcode";
        case status::refused: return "refused";
        case status::unavailable: return "unavailable";
        case status::internal_error: return "internal error";
        case status::moved: return "moved";
    }
    return "unknown status";
}

struct header {
    opcode op = opcode::ping;
    std::uint8_t flags = 0;
    status code = status::ok;
    std::uint64_t request_id = 0;
    std::uint32_t key_length = 0;
    std::uint32_t value_length = 0;

    [[nodiscard]] std::size_t payload_size() const noexcept {
        return std::size_t{key_length} + value_length;
    }
};

namespace detail {
inline void put_u16(std::byte* p, std::uint16_t v) noexcept {
    p[0] = std::byte(v & 0xff);
    p[1] = std::byte(v >> 8);
}
inline void put_u32(std::byte* p, std::uint32_t v) noexcept {
    for (int i = 0; i < 4; ++i) p[i] = std::byte((v >> (8 * i)) & 0xff);
}
inline void put_u64(std::byte* p, std::uint64_t v) noexcept {
    for (int i = 0; i < 8; ++i) p[i] = std::byte((v >> (8 * i)) & 0xff);
}
inline std::uint16_t get_u16(const std::byte* p) noexcept {
    return static_cast<std::uint16_t>(std::to_integer<unsigned>(p[0]) | std::to_integer<unsigned>(p[1]) << 8);
}
inline std::uint32_t get_u32(const std::byte* p) noexcept {
    std::uint32_t v = 0;
    for (int i = 3; i >= 0; --i) v = v << 8 | std::to_integer<std::uint32_t>(p[i]);
    return v;
}
inline std::uint64_t get_u64(const std::byte* p) noexcept {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = v << 8 | std::to_integer<std::uint64_t>(p[i]);
    return v;
}
}  // namespace detail

inline void encode(const header& h, std::span<std::byte, header_size> out) noexcept {
    std::byte* p = out.data();
    detail::put_u16(p, magic);
    p[2] = std::byte{version};
    p[3] = std::byte{static_cast<std::uint8_t>(h.op)};
    p[4] = std::byte{h.flags};
    p[5] = std::byte{static_cast<std::uint8_t>(h.code)};
    detail::put_u16(p + 6, 0);
    detail::put_u64(p + 8, h.request_id);
    detail::put_u32(p + 16, h.key_length);
    detail::put_u32(p + 20, h.value_length);
}

// Why a header was rejected. Anything but `none` means the stream can no longer be trusted to be
// in step, so the connection is closed after the error reply.
enum class header_error { none, bad_magic, bad_version, bad_reserved, key_too_large, value_too_large };

struct limits {
    std::size_t max_key_bytes = 1024;
    std::size_t max_value_bytes = 1 << 20;
};

[[nodiscard]] constexpr limits frame_limits(std::size_t max_key_bytes, std::size_t max_value_bytes) noexcept {
    return {max_key_bytes, max_value_bytes + frame_allowance};
}

struct decoded_header {
    header h;
    header_error error = header_error::none;
};

// Checks everything that can be checked before any payload is read or allocated. The opcode is
// not checked here: an unknown opcode in a well-formed frame is answered and skipped.
inline decoded_header decode(std::span<const std::byte, header_size> in, const limits& lim) noexcept {
    const std::byte* p = in.data();
    decoded_header d;
    if (detail::get_u16(p) != magic) return {d.h, header_error::bad_magic};
    if (std::to_integer<std::uint8_t>(p[2]) != version) return {d.h, header_error::bad_version};
    d.h.op = static_cast<opcode>(std::to_integer<std::uint8_t>(p[3]));
    d.h.flags = std::to_integer<std::uint8_t>(p[4]);
    d.h.code = static_cast<status>(std::to_integer<std::uint8_t>(p[5]));
    if (detail::get_u16(p + 6) != 0) return {d.h, header_error::bad_reserved};
    d.h.request_id = detail::get_u64(p + 8);
    d.h.key_length = detail::get_u32(p + 16);
    d.h.value_length = detail::get_u32(p + 20);
    if (d.h.key_length > lim.max_key_bytes) d.error = header_error::key_too_large;
    else if (d.h.value_length > lim.max_value_bytes) d.error = header_error::value_too_large;
    return d;
}

[[nodiscard]] constexpr std::string_view to_string(header_error e) noexcept {
    switch (e) {
        case header_error::none: return "none";
        case header_error::bad_magic: return "bad magic: not a dhtkit frame";
        case header_error::bad_version: return "unsupported protocol version (this peer speaks version 2)";
        case header_error::bad_reserved: return "reserved header bytes are not zero";
        case header_error::key_too_large: return "key longer than the peer's limit";
        case header_error::value_too_large: return "value longer than the peer's limit";
    }
    return "unknown header error";
}

[[nodiscard]] constexpr bool known(opcode op) noexcept {
    auto v = static_cast<std::uint8_t>(op);
    return v >= 1 && v <= max_opcode;
}

// Appends one whole frame to `out`.
inline void append_frame(std::string& out, header h, std::string_view key, std::string_view value) {
    h.key_length = static_cast<std::uint32_t>(key.size());
    h.value_length = static_cast<std::uint32_t>(value.size());
    std::array<std::byte, header_size> head;
    encode(h, head);
    out.append(reinterpret_cast<const char*>(head.data()), head.size());
    out.append(key);
    out.append(value);
}

}  // namespace dhtkit::protocol
