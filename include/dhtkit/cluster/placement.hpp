#pragma once
// The placement policy: which peer (an index into the ring-ordered peer list) is a key's home.
// `modulo_placement` is the seed's rule, the stable hash of the key modulo the peer count; a
// consistent-hashing policy can replace it without touching the peer.

#include <concepts>
#include <cstddef>
#include <string_view>

#include "dhtkit/store/stable_hash.hpp"

namespace dhtkit {

template <class P>
concept placement = requires(const P& p, std::string_view key, std::size_t peers) {
    { p.home(key, peers) } -> std::same_as<std::size_t>;
};

struct modulo_placement {
    [[nodiscard]] std::size_t home(std::string_view key, std::size_t peers) const noexcept {
        return static_cast<std::size_t>(stable_hash(key) % peers);
    }
};

static_assert(placement<modulo_placement>);

}  // namespace dhtkit
