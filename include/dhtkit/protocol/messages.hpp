#pragma once
// The payloads that are more than plain bytes: a file holder record, a list of them, and a
// file's size and checksum. Little-endian, field by field, like the header. Decoders return
// std::nullopt on any malformed input, never read past the end, and never throw.

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dhtkit/protocol/auth.hpp"
#include "dhtkit/protocol/frame.hpp"

namespace dhtkit::protocol {

// A peer that holds a copy of a file, as registered on the name's home peer.
struct holder {
    std::uint64_t peer_id = 0;  // the holder's node id
    std::string host;
    std::uint16_t port = 0;
    std::uint64_t size = 0;
    std::uint64_t checksum = 0;  // XXH3-64 of the content

    friend bool operator==(const holder&, const holder&) = default;
};

// What a holder says before the bytes of a file.
struct file_meta {
    std::uint64_t size = 0;
    std::uint64_t checksum = 0;
    std::uint32_t mode = 0644;  // the permission bits of the holder's file, which its copies keep
};

namespace detail {

class writer {
public:
    explicit writer(std::string& out) : out_(out) {}
    template <class T>
    void integer(T v) {
        for (std::size_t i = 0; i < sizeof(T); ++i)
            out_.push_back(static_cast<char>((static_cast<std::uint64_t>(v) >> (8 * i)) & 0xff));
    }
    void bytes(std::string_view s) { out_.append(s); }

private:
    std::string& out_;
};

class reader {
public:
    explicit reader(std::string_view in) : in_(in) {}
    template <class T>
    bool integer(T& v) {
        if (in_.size() < sizeof(T)) return false;
        std::uint64_t x = 0;
        for (std::size_t i = sizeof(T); i > 0; --i)
            x = x << 8 | static_cast<unsigned char>(in_[i - 1]);
        v = static_cast<T>(x);
        in_.remove_prefix(sizeof(T));
        return true;
    }
    bool bytes(std::size_t n, std::string& out) {
        if (in_.size() < n) return false;
        out.assign(in_.substr(0, n));
        in_.remove_prefix(n);
        return true;
    }
    [[nodiscard]] bool done() const noexcept { return in_.empty(); }

private:
    std::string_view in_;
};

}  // namespace detail

inline void append(std::string& out, const holder& h) {
    detail::writer w(out);
    w.integer(h.peer_id);
    w.integer(h.port);
    w.integer(static_cast<std::uint16_t>(h.host.size()));
    w.bytes(std::string_view(h.host).substr(0, 0xffff));
    w.integer(h.size);
    w.integer(h.checksum);
}

inline std::string encode_holders(const std::vector<holder>& hs) {
    std::string out;
    for (const auto& h : hs) append(out, h);
    return out;
}

inline std::optional<std::vector<holder>> decode_holders(std::string_view in) {
    detail::reader r(in);
    std::vector<holder> out;
    while (!r.done()) {
        holder h;
        std::uint16_t host_length = 0;
        if (!r.integer(h.peer_id) || !r.integer(h.port) || !r.integer(host_length) ||
            !r.bytes(host_length, h.host) || !r.integer(h.size) || !r.integer(h.checksum))
            return std::nullopt;
        out.push_back(std::move(h));
    }
    return out;
}

inline std::string encode(const file_meta& m) {
    std::string out;
    detail::writer w(out);
    w.integer(m.size);
    w.integer(m.checksum);
    w.integer(m.mode);
    return out;
}

inline std::optional<file_meta> decode_file_meta(std::string_view in) {
    detail::reader r(in);
    file_meta m;
    if (!r.integer(m.size) || !r.integer(m.checksum)) return std::nullopt;
    if (!r.done() && (!r.integer(m.mode) || !r.done() || m.mode > 0777)) return std::nullopt;  // without: 0644
    return m;
}

// Which of a peer's tables a replication record is for: the first byte of the record; the rest is
// a versioned entry (store/versioned.hpp).
enum class table_id : std::uint8_t { keys = 0, files = 1 };

inline std::optional<table_id> record_table(std::string_view record) noexcept {
    if (record.empty()) return std::nullopt;
    auto t = static_cast<unsigned char>(record[0]);
    if (t > 1) return std::nullopt;
    return static_cast<table_id>(t);
}

// A sync request: the asking node's id, then the slot ranges whose records it wants.
struct sync_request {
    std::uint64_t asker = 0;
    std::vector<std::pair<std::uint16_t, std::uint16_t>> ranges;  // inclusive [first, last]
    // With flag_digests: the asker's digest of every slot of the ranges, in order.
    std::vector<std::uint64_t> digests = {};
};

// Without digests: asker, then ranges. With them (flag_digests on the frame): asker, the count of
// ranges (u16), the ranges, then one digest per slot of the ranges.
inline std::string encode(const sync_request& r) {
    std::string out;
    detail::writer w(out);
    w.integer(r.asker);
    if (!r.digests.empty()) w.integer(static_cast<std::uint16_t>(r.ranges.size()));
    for (auto [first, last] : r.ranges) {
        w.integer(first);
        w.integer(last);
    }
    for (auto d : r.digests) w.integer(d);
    return out;
}

inline std::optional<sync_request> decode_sync_request(std::string_view in, bool with_digests = false) {
    detail::reader r(in);
    sync_request out;
    if (!r.integer(out.asker)) return std::nullopt;
    std::uint16_t first = 0, last = 0;
    if (!with_digests) {
        if ((in.size() - 8) % 4 != 0) return std::nullopt;
        while (r.integer(first) && r.integer(last)) {
            if (first > last) return std::nullopt;
            out.ranges.emplace_back(first, last);
        }
        return out;
    }
    std::uint16_t count = 0;
    if (!r.integer(count)) return std::nullopt;
    std::size_t slots = 0;
    for (std::uint16_t i = 0; i < count; ++i) {
        if (!r.integer(first) || !r.integer(last) || first > last) return std::nullopt;
        out.ranges.emplace_back(first, last);
        slots += std::size_t{last} - first + 1;
    }
    if (slots > 65536) return std::nullopt;
    out.digests.resize(slots);
    for (auto& d : out.digests)
        if (!r.integer(d)) return std::nullopt;
    if (!r.done()) return std::nullopt;
    return out;
}

// The greeting a client or node sends first on a connection: the digest of the cluster map it
// follows, and where that map came from (a config file's path), for the error if they differ.
struct hello_request {
    std::uint64_t map_digest = 0;
    std::string source;
    // Not sent: the cluster's key, with which the connecting side signs what follows the hello
    // when the other side answers with a session nonce (protocol/auth.hpp). Null: nothing signed.
    std::shared_ptr<const cluster_key> secret = nullptr;
    // Not sent in the hello either: when not empty, sent as an `auth` request right after it.
    std::string password = {};
};

inline std::string encode(const hello_request& h) {
    std::string out;
    detail::writer w(out);
    w.integer(h.map_digest);
    w.bytes(h.source);
    return out;
}

inline std::optional<hello_request> decode_hello(std::string_view in) {
    detail::reader r(in);
    hello_request h;
    if (!r.integer(h.map_digest)) return std::nullopt;
    h.source.assign(in.substr(8));
    return h;
}

// A read-lease request: the asker's node id, then the placement digest of the map it follows
// (cluster_map::placement_digest; zero: none in particular, which a grantor under "majority"
// with a live map refuses). Eight bytes alone are an id with no map.
struct lease_request {
    std::uint64_t asker = 0;
    std::uint64_t map = 0;
};

inline std::string encode(const lease_request& l) {
    std::string out;
    detail::writer w(out);
    w.integer(l.asker);
    w.integer(l.map);
    return out;
}

inline std::optional<lease_request> decode_lease_request(std::string_view in) {
    detail::reader r(in);
    lease_request l;
    if (!r.integer(l.asker)) return std::nullopt;
    if (!r.done() && !r.integer(l.map)) return std::nullopt;
    if (!r.done()) return std::nullopt;
    return l;
}

// The latest moment a value may expire at, in ms since the Unix epoch: what a signed 64-bit count
// holds, as in Redis. A later one is refused (an expire, a put's options), never wrapped round.
inline constexpr std::uint64_t latest_expiry_ms = 0x7fff'ffff'ffff'ffff;

// The options of a put with flag_options (SET's EX/PX/EXAT/PXAT, NX, XX, KEEPTTL and GET): a mask
// and an expiry (u64 ms since the Unix epoch), 9 bytes after the version of a stamped put.
struct put_options {
    static constexpr std::uint8_t expires = 1, if_absent = 2, if_present = 4, keep_ttl = 8, return_old = 16;
    static constexpr std::size_t size = 9;
    std::uint8_t mask = 0;
    std::uint64_t expires_at_ms = 0;
};
inline void append(std::string& out, const put_options& o) {
    detail::writer w(out);
    w.integer(o.mask);
    w.integer(o.expires_at_ms);
}
inline std::optional<put_options> decode_put_options(std::string_view in) {
    detail::reader r(in);
    put_options o;
    if (!r.integer(o.mask) || !r.integer(o.expires_at_ms) || o.mask > 31 || o.expires_at_ms > latest_expiry_ms ||
        ((o.mask & put_options::expires) && o.expires_at_ms == 0))
        return std::nullopt;
    return o;
}
// The reply value of such a put: whether it was made, whether the key had a live value, and (when
// asked with return_old) that value.
struct put_outcome {
    bool set = false;
    bool had_value = false;
    std::string_view old_value;
};
inline std::optional<put_outcome> decode_put_outcome(std::string_view in) {
    if (in.size() < 2) return std::nullopt;
    return put_outcome{in[0] != 0, in[1] != 0, in.substr(2)};
}

inline std::string encode_u64(std::uint64_t v) {
    std::string out;
    detail::writer(out).integer(v);
    return out;
}

inline std::optional<std::uint64_t> decode_u64(std::string_view in) {
    detail::reader r(in);
    std::uint64_t v = 0;
    if (!r.integer(v) || !r.done()) return std::nullopt;
    return v;
}

// A get with flag_options (TTL) answers the value's expiry first: unix milliseconds as a u64, 0
// when it never expires, then the value. The expiry; nothing when the answer is shorter.
inline std::optional<std::uint64_t> decode_expiry(std::string_view answer) {
    if (answer.size() < sizeof(std::uint64_t)) return std::nullopt;
    return decode_u64(answer.substr(0, sizeof(std::uint64_t)));
}

}  // namespace dhtkit::protocol
