#pragma once
// The replication policy: which peers hold copies of a key besides its home. `no_replication`
// keeps none. The static backup of the seed (the R peers after the home on the ring) is its own
// issue and will stand here beside it.

#include <concepts>
#include <cstddef>
#include <vector>

namespace dhtkit {

template <class R>
concept replication_policy = requires(const R& r, std::size_t home, std::size_t peers) {
    { r.replicas(home, peers) } -> std::same_as<std::vector<std::size_t>>;
};

struct no_replication {
    [[nodiscard]] std::vector<std::size_t> replicas(std::size_t, std::size_t) const { return {}; }
};

static_assert(replication_policy<no_replication>);

}  // namespace dhtkit
