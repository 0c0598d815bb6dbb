// The example of docs/policies.md, compiled and run: a replication policy and a table written
// outside the library — consistent hashing on a ring of virtual nodes, and a std::unordered_map
// under one lock — composed into a peer with the library's reactor and executor.
#include <catch2/catch.hpp>

#include <dhtkit/peer/peer.hpp>

#include <algorithm>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "in_process_cluster.hpp"

using namespace dhtkit;

namespace {

// Consistent hashing: each node takes `points` places on a 64-bit ring; a slot's home is the
// first node clockwise from the slot's own place, its backups the next distinct nodes after it.
class ring_placement {
public:
    static constexpr bool follows_membership = false;  // a static map: the nodes of the settings
    static constexpr std::string_view name = "ring";  // what a registry (app/policy_registry.hpp) would call it
    static constexpr int points = 64;

    ring_placement(std::size_t backups, consistency rule) : backups_(backups), rule_(rule) {}

    [[nodiscard]] slot_table place(const std::vector<node>& nodes) const {
        std::map<std::uint64_t, node_id> ring;
        for (const auto& n : nodes)
            for (int i = 0; i < points; ++i) ring.emplace(mix(n.id * 1000003 + static_cast<std::uint64_t>(i)), n.id);
        slot_table t;
        if (ring.empty()) return t;
        const std::size_t copies = std::min(backups_ + 1, nodes.size());
        for (std::size_t s = 0; s < slot_count; ++s) {
            std::vector<node_id> set;
            auto at = ring.lower_bound(mix(0x5107ULL << 32 | s));
            while (set.size() < copies) {
                if (at == ring.end()) at = ring.begin();
                if (std::find(set.begin(), set.end(), at->second) == set.end()) set.push_back(at->second);
                ++at;
            }
            t.assign({static_cast<slot_t>(s), static_cast<slot_t>(s)}, std::move(set));
        }
        return t;
    }
    // The acknowledgement rule: "available" counts one holder, "majority" more than half.
    [[nodiscard]] std::size_t quorum(std::size_t holders) const {
        return rule_ == consistency::available ? 1 : holders / 2 + 1;
    }
    [[nodiscard]] bool acknowledged(std::size_t applied, std::size_t holders) const { return applied >= quorum(holders); }

private:
    static std::uint64_t mix(std::uint64_t z) {  // splitmix64's finaliser
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
    }
    std::size_t backups_;
    consistency rule_;
};

// The standard library's hash map behind one reader/writer lock: one shard.
class unordered_table {
public:
    using mapped_type = std::string;
    using key_view = std::string_view;
    using value_view = std::string_view;
    static constexpr std::size_t shard_count = 1;

    bool get(key_view k, std::string& out) const {
        std::shared_lock lock(mutex_);
        auto it = map_.find(k);
        if (it == map_.end()) return false;
        out = it->second;
        return true;
    }
    std::optional<std::string> try_get(key_view k) const {
        std::string out;
        if (!get(k, out)) return std::nullopt;
        return out;
    }
    bool put(key_view k, value_view v) {
        std::unique_lock lock(mutex_);
        auto [it, fresh] = map_.try_emplace(std::string(k));
        it->second.assign(v);
        return fresh;
    }
    // `f(current)` under the write lock; what it returns is stored (std::nullopt: nothing changes).
    template <class F>
    bool update(key_view k, F&& f) {
        std::unique_lock lock(mutex_);
        auto it = map_.find(k);
        std::optional<value_view> current;
        if (it != map_.end()) current.emplace(it->second);
        auto next = std::forward<F>(f)(current);
        if (!next) return false;
        if (it != map_.end()) it->second = std::move(*next);
        else map_.emplace(std::string(k), std::move(*next));
        return true;
    }
    bool erase(key_view k) {
        std::unique_lock lock(mutex_);
        auto it = map_.find(k);
        if (it == map_.end()) return false;
        map_.erase(it);
        return true;
    }
    template <class Pred>
    bool erase_if(key_view k, Pred&& pred) {
        std::unique_lock lock(mutex_);
        auto it = map_.find(k);
        if (it == map_.end() || !std::forward<Pred>(pred)(value_view(it->second))) return false;
        map_.erase(it);
        return true;
    }
    void shrink_shard(std::size_t) {}
    bool contains(key_view k) const {
        std::shared_lock lock(mutex_);
        return map_.find(k) != map_.end();
    }
    [[nodiscard]] std::size_t size() const {
        std::shared_lock lock(mutex_);
        return map_.size();
    }
    template <class F>
    void for_each_in(std::size_t, F&& f) const {
        std::shared_lock lock(mutex_);
        for (const auto& [k, v] : map_) f(key_view(k), value_view(v));
    }
    template <class F>
    void for_each(F&& f) const {
        for_each_in(0, std::forward<F>(f));
    }
    // The same, calling `between()` after each shard (here, the one) with no lock held.
    template <class F, class G>
    void for_each(F&& f, G&& between) const {
        for_each_in(0, std::forward<F>(f));
        between();
    }

private:
    struct hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
    };
    mutable std::shared_mutex mutex_;
    std::unordered_map<std::string, std::string, hash, std::equal_to<>> map_;
};

}  // namespace

static_assert(replication_policy<ring_placement>);
static_assert(string_table<unordered_table>);

TEST_CASE("a ring placement and an unordered_map table of the test's own make a working cluster") {
    test::in_process_cluster<ring_placement, unordered_table> cluster(3);
    auto c = cluster.client();
    // The ring spreads the homes, and every slot has a home and one backup (R = 2 by default,
    // bounded by the nodes: three copies on three nodes).
    std::map<node_id, std::size_t> homes;
    for (int i = 0; i < 300; ++i) {
        const auto key = fmt::format("key-{}", i);
        const auto h = c.holders(key);
        REQUIRE(h.size() == 3);
        ++homes[h.front()];
        REQUIRE(c.put(key, fmt::format("v{}", i)).ok());
    }
    CHECK(homes.size() == 3);
    for (const auto& [id, n] : homes) CHECK(n > 30);
    // Each holder answers from its own unordered_map.
    for (int i = 0; i < 300; i += 37) {
        const auto key = fmt::format("key-{}", i);
        for (auto id : c.holders(key)) CHECK(c.call(id, protocol::opcode::get, key).value == fmt::format("v{}", i));
        CHECK(c.get(key).value == fmt::format("v{}", i));
    }
    REQUIRE(c.del("key-0").ok());
    CHECK(c.get("key-0").code == protocol::status::not_found);
}
