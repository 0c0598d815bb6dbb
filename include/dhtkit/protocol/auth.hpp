#pragma once
// Signed frames: how the nodes of a cluster that share a secret know each other's requests.
//
// A node that has the cluster's secret answers every hello with a fresh random session nonce.
// The connecting side, if it has the secret too, signs the requests that only the cluster's own
// nodes may make (needs_signature) that it sends on that connection after the hello (a client's
// put or get needs none, and is spared the cost): the frame carries flag `signed` and its value
// ends with a MAC over the nonce, the request's opcode, flags and id, its key and the rest of its
// value. The MAC is libsodium's keyed BLAKE2b (crypto_generichash with a key, 32 bytes), which
// libsodium offers as a MAC and which costs about half of its HMAC-SHA-512-256 (crypto_auth) on
// frames of a few hundred bytes: a replicated write is signed and checked once per copy. The answering side accepts a signed request only with a good MAC and an
// id above the last one it accepted on that connection. So a recorded request is worth nothing:
// on another connection the nonce differs, and on its own connection its id is spent.
//
// The key is derived from the secret file's bytes (a generic hash), so any length of secret works
// and the file is never used as a key directly.

#include <sodium.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "dhtkit/protocol/codec.hpp"
#include "dhtkit/protocol/frame.hpp"

namespace dhtkit::protocol {

// Header flag of a request whose value ends with a MAC (see the top of this file).
inline constexpr std::uint8_t flag_signed = 8;

inline constexpr std::size_t mac_size = crypto_generichash_BYTES;  // 32
using cluster_key = std::array<unsigned char, crypto_generichash_KEYBYTES>;
using session_nonce = std::array<unsigned char, 16>;

namespace detail {
inline void sodium_ready() {
    static const bool ready = sodium_init() >= 0;
    if (!ready) throw std::runtime_error("libsodium could not be initialised");
}

using mac_state = crypto_generichash_state;

// The MAC's state once it has taken the key and a connection's nonce: made once per connection
// and copied for each frame, which saves hashing the key's padded block every time.
inline mac_state keyed_state(const cluster_key& key, const session_nonce& nonce) {
    sodium_ready();
    mac_state st;
    crypto_generichash_init(&st, key.data(), key.size(), mac_size);
    crypto_generichash_update(&st, nonce.data(), nonce.size());
    return st;
}

inline void mac_of(const mac_state& keyed, const header& h, std::string_view k, std::string_view v, unsigned char* out) {
    mac_state st = keyed;
    unsigned char fixed[2 + 8 + 4 + 4];
    fixed[0] = static_cast<unsigned char>(h.op);
    fixed[1] = static_cast<unsigned char>(h.flags | flag_signed);
    for (int i = 0; i < 8; ++i) fixed[2 + i] = static_cast<unsigned char>(h.request_id >> (8 * i));
    const auto kl = static_cast<std::uint32_t>(k.size()), vl = static_cast<std::uint32_t>(v.size());
    for (int i = 0; i < 4; ++i) fixed[10 + i] = static_cast<unsigned char>(kl >> (8 * i));
    for (int i = 0; i < 4; ++i) fixed[14 + i] = static_cast<unsigned char>(vl >> (8 * i));
    crypto_generichash_update(&st, fixed, sizeof fixed);
    crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(k.data()), k.size());
    crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(v.data()), v.size());
    crypto_generichash_final(&st, out, mac_size);
}
}  // namespace detail

// The requests only the cluster's own nodes make: with a cluster secret, they must be signed.
[[nodiscard]] constexpr bool needs_signature(const header& h) noexcept {
    switch (h.op) {
        case opcode::replicate:
        case opcode::sync:
        case opcode::replicate_file:
        case opcode::lease:
        case opcode::register_file:
        case opcode::unregister_file:
        case opcode::leave: return true;
        case opcode::get:
        case opcode::search: return h.flags & flag_own_copy;
        default: return false;
    }
}

// The key a secret's bytes make.
[[nodiscard]] inline cluster_key derive_key(std::string_view secret) {
    detail::sodium_ready();
    cluster_key k{};
    crypto_generichash(k.data(), k.size(), reinterpret_cast<const unsigned char*>(secret.data()), secret.size(),
                       nullptr, 0);
    return k;
}

// A fresh nonce for a connection's hello answer.
[[nodiscard]] inline session_nonce new_nonce() {
    detail::sodium_ready();
    session_nonce n{};
    randombytes_buf(n.data(), n.size());
    return n;
}

// The connecting side's: appends request frames signed for one connection.
class frame_signer {
public:
    frame_signer(const cluster_key& key, const session_nonce& nonce) : keyed_(detail::keyed_state(key, nonce)) {}

    void append(std::string& out, header h, std::string_view key, std::string_view value) const {
        h.flags |= flag_signed;
        unsigned char mac[mac_size];
        detail::mac_of(keyed_, h, key, value, mac);
        h.key_length = static_cast<std::uint32_t>(key.size());
        h.value_length = static_cast<std::uint32_t>(value.size() + mac_size);
        const auto at = out.size();
        out.resize(at + header_size);
        encode(h, std::span<std::byte, header_size>(reinterpret_cast<std::byte*>(out.data() + at), header_size));
        out.append(key);
        out.append(value);
        out.append(reinterpret_cast<const char*>(mac), mac_size);
    }

private:
    detail::mac_state keyed_;
};

// The answering side's, one per connection: checks signed requests.
class frame_verifier {
public:
    frame_verifier(const cluster_key& key, const session_nonce& nonce) : keyed_(detail::keyed_state(key, nonce)) {}

    // For a frame with flag `signed`: true when its MAC is good and its id unspent; then
    // `f.value` no longer includes the MAC.
    bool verify(frame_view& f) {
        if (!(f.h.flags & flag_signed) || f.value.size() < mac_size) return false;
        if (spent_ && f.h.request_id <= last_id_) return false;
        auto value = f.value.substr(0, f.value.size() - mac_size);
        unsigned char mac[mac_size];
        detail::mac_of(keyed_, f.h, f.key, value, mac);
        if (sodium_memcmp(mac, f.value.data() + value.size(), mac_size) != 0) return false;
        last_id_ = f.h.request_id;
        spent_ = true;
        f.value = value;
        return true;
    }

private:
    detail::mac_state keyed_;
    std::uint64_t last_id_ = 0;
    bool spent_ = false;
};

}  // namespace dhtkit::protocol
