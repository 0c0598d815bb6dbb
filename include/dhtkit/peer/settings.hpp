#pragma once
// A peer's and its cluster's settings, as plain data. Nothing here reads a file: app/config.hpp
// fills these from TOML, and a program that composes a peer in code fills them itself.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "dhtkit/cluster/membership.hpp"
#include "dhtkit/cluster/replication.hpp"
#include "dhtkit/protocol/auth.hpp"
#include "dhtkit/store/storage.hpp"

namespace dhtkit {

// A settings value that cannot be used: names what and where.
struct settings_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct peer_settings {
    std::uint64_t id = 0;  // the node id: stable, whatever the peer's place in the list
    std::string host;
    std::uint16_t port = 0;
    std::filesystem::path shared_dir;
    std::filesystem::path data_dir;
    std::uint16_t resp_port = 0;  // RESP clients (redis-cli and the like) connect here; 0: none
    // A peer of the file (a seed: in the first map). False for one that joined a live cluster
    // later (dhtkit-peer --join): it is this process itself, known to the others by gossip.
    bool seed = true;
};

struct limits_settings {
    std::size_t max_key_bytes = 1024;
    std::size_t max_value_bytes = 1 << 20;
    std::size_t max_in_flight = 128;  // requests answered per connection before others get a turn
    // Queued replies beyond this stop the reading of a connection's requests until its client has
    // taken them: a client that does not read holds at most this much (plus one reply) of memory.
    std::size_t max_output_bytes = 1 << 20;
    // A connection that moves no byte for this long while a request is half received or a reply
    // half sent is closed. Zero: never. An idle connection between requests is never closed.
    std::chrono::seconds idle_timeout{30};
};

enum class dispatch_model { loop, pool };

struct cluster_settings {
    std::filesystem::path source;  // the file it was read from, for messages; empty when made in code
    std::size_t pool_threads = 4;
    dispatch_model dispatch = dispatch_model::loop;
    limits_settings limits;
    unsigned backups = 2;        // R: the copies of every slot besides its home
    consistency consistency_rule = consistency::available;  // how many holders a write and a read need
    // [replication] min_copies: a write is acknowledged only once at least this many holders
    // (the one that took it included) applied it, whatever the rule; at most R + 1.
    std::size_t min_copies = 1;
    // [replication] tombstone_purge_s: tombstones older than this are removed for good; it must
    // outlast any peer's absence (docs/replication.md). Zero: never.
    std::chrono::seconds tombstone_purge{86400};
    // [replication] policy: the replication policy's name (replication_policy::name), which the
    // program's registry (app/policy_registry.hpp) turns into its peer type.
    std::string policy = "static";
    // Whether that policy follows live membership (failure detection, gossip; "dynamic"): the
    // config reader sets it from the registry, for the parts that work from settings alone (a
    // client's first map, joining). "static" (false): the peers of the file hold the slots.
    bool live_membership = false;
    membership_options membership;  // [membership]: probing and gossip, for the dynamic policy
    bool leave_on_stop = false;     // [membership] leave_on_stop: SIGTERM hands the slots over first
    std::uint64_t heal_bytes_per_s = 50ull << 20;  // [replication] heal_mb_per_s: healing's pace (0: none)
    std::string join;               // HOST:PORT of a member to join through (dhtkit-peer --join); empty: none
    // A write or record stamped further ahead of a peer's clock is refused.
    std::chrono::milliseconds max_clock_skew{60000};
    storage_settings storage;  // [storage]: what outlives a peer's process (memory: nothing)
    // [resp] route: a RESP request for a key this node does not hold is answered -MOVED (false) or
    // forwarded to the key's holders (true).
    bool resp_forward = false;
    // The key made from [security] cluster_secret_file: peers sign their requests to each other
    // with it, and refuse unsigned ones (protocol/auth.hpp). Null: an open cluster.
    std::shared_ptr<const protocol::cluster_key> cluster_key;
    // From [security] client_password_file (or, for dhtkit-cli, DHTKIT_PASSWORD): when set, a
    // connection sends it (`auth`) before anything but ping. Empty: no password.
    std::string client_password;
    unsigned max_restarts = 5;   // worker restarts allowed within restart_window_s before the supervisor gives up
    unsigned restart_window_s = 60;
    std::vector<peer_settings> peers;  // the configured nodes, in file order

    [[nodiscard]] const peer_settings& peer(std::uint64_t id) const {
        for (const auto& p : peers)
            if (p.id == id) return p;
        throw settings_error((source.empty() ? std::string("the cluster settings") : source.string()) +
                             ": no peer with id " + std::to_string(id) + " (there are " +
                             std::to_string(peers.size()) + " peers)");
    }
    [[nodiscard]] bool has_peer(std::uint64_t id) const noexcept {
        for (const auto& p : peers)
            if (p.id == id) return true;
        return false;
    }
};

}  // namespace dhtkit
