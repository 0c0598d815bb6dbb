#pragma once
// The datagrams of failure detection and gossip (cluster/failure_detector.hpp), one message per
// UDP datagram, little-endian like our frames:
//
//   magic "DKG1" | kind u8 | flags u8 | seq u64 | from u64 | cluster u64
//   | target id u64 | target port u16 | target host (u8 length, bytes)     (ping_req only)
//   | count u16 | count records: id u64, incarnation u64, state u8, port u16, resp_port u16,
//                               host (u8 length, bytes)
//   | with flag 1: nonce 16 bytes | MAC 32 bytes
//
// Kinds: ping, ack, ping_req (probe `target` for me), sync and sync_reply (whole views), gossip
// (news, no answer). `cluster` is the cluster's identity: a datagram from another cluster that happens to share a
// port is dropped. With a cluster secret, every datagram carries a fresh random nonce and a MAC
// (keyed BLAKE2b, as protocol/auth.hpp) over everything before the MAC; a node with the secret
// drops what is unsigned or wrongly signed. A recorded datagram sent again is worth little: an
// ack counts only for the sequence number of a probe still waiting (random, 64 bits), and a
// record only if it wins over what is known (cluster/membership.hpp), which an old one does not.

#include <sodium.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dhtkit/cluster/membership.hpp"
#include "dhtkit/protocol/auth.hpp"
#include "dhtkit/cluster/map_codec.hpp"
#include "dhtkit/protocol/messages.hpp"

namespace dhtkit::protocol {

enum class gossip_kind : std::uint8_t {
    ping = 1,       // are you there? (answer: ack with the same seq)
    ack = 2,
    ping_req = 3,   // probe `target` for me, and send me its ack
    sync = 4,       // my whole view; answer with yours (sync_reply)
    sync_reply = 5,
    gossip = 6,     // news only, no answer
};

struct gossip_message {
    gossip_kind kind = gossip_kind::ping;
    std::uint64_t seq = 0;
    node_id from = 0;
    std::uint64_t cluster = 0;
    node target;  // ping_req: whom to probe (id, host, port)
    std::vector<member> records;
};

inline constexpr std::uint8_t gossip_signed = 1;
// No node refutes that often: a record above this is refused, so that the view's epoch (a sum of
// 4 x incarnation over the members, cluster/membership.hpp) can never wrap around.
inline constexpr std::uint64_t max_incarnation = std::uint64_t{1} << 40;
inline constexpr std::string_view gossip_magic = "DKG1";

namespace detail {
inline void append_host(writer& w, std::string_view host) {
    host = host.substr(0, 255);
    w.integer(static_cast<std::uint8_t>(host.size()));
    w.bytes(host);
}
inline bool read_host(reader& r, std::string& host) {
    std::uint8_t n = 0;
    return r.integer(n) && r.bytes(n, host);
}
inline void gossip_mac(const cluster_key& key, std::string_view signed_part, unsigned char* out) {
    sodium_ready();
    crypto_generichash(out, mac_size, reinterpret_cast<const unsigned char*>(signed_part.data()), signed_part.size(),
                       key.data(), key.size());
}
}  // namespace detail

// The size of one record on the wire: news is packed up to a datagram's budget with it.
[[nodiscard]] inline std::size_t wire_size(const member& m) noexcept {
    return 8 + 8 + 1 + 2 + 2 + 1 + std::min<std::size_t>(m.at.host.size(), 255);
}

// `key`: sign with it (null: unsigned).
[[nodiscard]] inline std::string encode(const gossip_message& m, const cluster_key* key) {
    std::string out;
    detail::writer w(out);
    w.bytes(gossip_magic);
    w.integer(static_cast<std::uint8_t>(m.kind));
    w.integer(static_cast<std::uint8_t>(key ? gossip_signed : 0));
    w.integer(m.seq);
    w.integer(m.from);
    w.integer(m.cluster);
    if (m.kind == gossip_kind::ping_req) {
        w.integer(m.target.id);
        w.integer(m.target.port);
        detail::append_host(w, m.target.host);
    }
    w.integer(static_cast<std::uint16_t>(std::min<std::size_t>(m.records.size(), 0xffff)));
    std::size_t n = 0;
    for (const auto& r : m.records) {
        if (n++ == 0xffff) break;
        w.integer(r.at.id);
        w.integer(r.incarnation);
        w.integer(static_cast<std::uint8_t>(r.at.state));
        w.integer(r.at.port);
        w.integer(r.at.resp_port);
        detail::append_host(w, r.at.host);
    }
    if (key) {
        std::array<unsigned char, 16> nonce{};
        detail::sodium_ready();
        randombytes_buf(nonce.data(), nonce.size());
        out.append(reinterpret_cast<const char*>(nonce.data()), nonce.size());
        unsigned char mac[mac_size];
        detail::gossip_mac(*key, out, mac);
        out.append(reinterpret_cast<const char*>(mac), mac_size);
    }
    return out;
}

enum class gossip_refusal { none, malformed, unsigned_message, bad_mac };

[[nodiscard]] constexpr std::string_view to_string(gossip_refusal r) noexcept {
    switch (r) {
        case gossip_refusal::none: return "ok";
        case gossip_refusal::malformed: return "malformed datagram";
        case gossip_refusal::unsigned_message: return "unsigned datagram (this cluster has a secret)";
        case gossip_refusal::bad_mac: return "datagram signed with another secret";
    }
    return "?";
}

// Reads a datagram. With `key`, only one signed with it is accepted; without, a signed one is
// read too (its MAC unchecked: this node cannot check it, and an open cluster asks for none).
[[nodiscard]] inline std::optional<gossip_message> decode_gossip(std::string_view in, const cluster_key* key,
                                                                 gossip_refusal* why = nullptr) {
    auto refuse = [&](gossip_refusal r) -> std::optional<gossip_message> {
        if (why) *why = r;
        return std::nullopt;
    };
    if (in.size() < gossip_magic.size() + 2 || in.substr(0, gossip_magic.size()) != gossip_magic)
        return refuse(gossip_refusal::malformed);
    const auto flags = static_cast<std::uint8_t>(in[gossip_magic.size() + 1]);
    std::string_view body = in;
    if (flags & gossip_signed) {
        if (in.size() < gossip_magic.size() + 2 + 16 + mac_size) return refuse(gossip_refusal::malformed);
        body = in.substr(0, in.size() - 16 - mac_size);
        if (key) {
            unsigned char mac[mac_size];
            detail::gossip_mac(*key, in.substr(0, in.size() - mac_size), mac);
            if (sodium_memcmp(mac, in.data() + in.size() - mac_size, mac_size) != 0) return refuse(gossip_refusal::bad_mac);
        }
    } else if (key) {
        return refuse(gossip_refusal::unsigned_message);
    }
    detail::reader r(body.substr(gossip_magic.size()));
    gossip_message m;
    std::uint8_t kind = 0, f = 0;
    if (!r.integer(kind) || !r.integer(f) || !r.integer(m.seq) || !r.integer(m.from) || !r.integer(m.cluster))
        return refuse(gossip_refusal::malformed);
    if (kind < 1 || kind > 6) return refuse(gossip_refusal::malformed);
    m.kind = static_cast<gossip_kind>(kind);
    if (m.kind == gossip_kind::ping_req &&
        (!r.integer(m.target.id) || !r.integer(m.target.port) || !detail::read_host(r, m.target.host)))
        return refuse(gossip_refusal::malformed);
    std::uint16_t count = 0;
    if (!r.integer(count)) return refuse(gossip_refusal::malformed);
    m.records.reserve(std::min<std::size_t>(count, body.size() / 22 + 1));
    for (std::uint16_t i = 0; i < count; ++i) {
        member x;
        std::uint8_t state = 0;
        if (!r.integer(x.at.id) || !r.integer(x.incarnation) || !r.integer(state) || !r.integer(x.at.port) ||
            !r.integer(x.at.resp_port) || !detail::read_host(r, x.at.host))
            return refuse(gossip_refusal::malformed);
        if (state != static_cast<std::uint8_t>(node_state::member) && state != static_cast<std::uint8_t>(node_state::suspect) &&
            state != static_cast<std::uint8_t>(node_state::failed) && state != static_cast<std::uint8_t>(node_state::left))
            return refuse(gossip_refusal::malformed);
        if (x.incarnation > max_incarnation) return refuse(gossip_refusal::malformed);
        x.at.state = static_cast<node_state>(state);
        m.records.push_back(std::move(x));
    }
    if (!r.done()) return refuse(gossip_refusal::malformed);
    if (why) *why = gossip_refusal::none;
    return m;
}

}  // namespace dhtkit::protocol
