#pragma once
// The replication policy: which peers hold copies of a key besides its home, in the order a
// client falls over to them. The machinery that keeps the copies equal (cluster/replicator.hpp,
// cluster/catch_up.hpp) asks only this question, so a policy with changing membership can stand
// here beside the static ones.
//
//   no_replication   one copy, on the home peer.
//   static_backup    the seed's rule: the `backups` peers that follow the home on the ring
//                    (wrapping around); R = backups comes from the config ([replication] backups),
//                    which is why it is a value and not a template argument.

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <vector>

namespace dhtkit {

template <class R>
concept replication_policy = requires(const R& r, std::size_t home, std::size_t peers) {
    { r.replicas(home, peers) } -> std::same_as<std::vector<std::size_t>>;
};

struct no_replication {
    no_replication() = default;
    explicit no_replication(std::size_t) {}
    [[nodiscard]] std::vector<std::size_t> replicas(std::size_t, std::size_t) const { return {}; }
};

class static_backup {
public:
    explicit static_backup(std::size_t backups = 2) noexcept : backups_(backups) {}

    [[nodiscard]] std::vector<std::size_t> replicas(std::size_t home, std::size_t peers) const {
        std::vector<std::size_t> out;
        if (peers == 0) return out;
        std::size_t n = std::min(backups_, peers - 1);
        for (std::size_t i = 1; i <= n; ++i) out.push_back((home + i) % peers);
        return out;
    }
    [[nodiscard]] std::size_t backups() const noexcept { return backups_; }

private:
    std::size_t backups_;
};

static_assert(replication_policy<no_replication>);
static_assert(replication_policy<static_backup>);

// Every peer that holds `home`'s keys: the home first, then its replicas.
template <replication_policy R>
[[nodiscard]] std::vector<std::size_t> holders_of(const R& r, std::size_t home, std::size_t peers) {
    auto out = r.replicas(home, peers);
    out.insert(out.begin(), home);
    return out;
}

// The homes whose keys peer `self` holds a copy of: what it must catch up on after a restart.
template <replication_policy R>
[[nodiscard]] std::vector<std::size_t> homes_held_by(const R& r, std::size_t self, std::size_t peers) {
    std::vector<std::size_t> out;
    for (std::size_t home = 0; home < peers; ++home) {
        auto all = holders_of(r, home, peers);
        if (std::find(all.begin(), all.end(), self) != all.end()) out.push_back(home);
    }
    return out;
}

}  // namespace dhtkit
