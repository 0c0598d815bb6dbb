#pragma once
// The replicator: copies the records of writes to the other replicas of their keys, and tells the
// writer when each copy was applied or could not be delivered. One replica_link (a long-lived
// connection and a thread) per other peer of the cluster; see cluster/replica_link.hpp for how a
// link pipelines, batches, and remembers what a down replica missed.

#include <cstddef>
#include <memory>
#include <string_view>
#include <vector>

#include "dhtkit/app/config.hpp"
#include "dhtkit/cluster/replica_link.hpp"
#include "dhtkit/protocol/messages.hpp"

namespace dhtkit {

// A link to every other peer of the cluster.
class replicator {
public:
    replicator(const cluster_config& cluster, std::size_t self, record_source source, replicator_options opt = {}) {
        for (std::size_t i = 0; i < cluster.peers.size(); ++i)
            links_.push_back(i == self ? nullptr
                                       : std::make_unique<replica_link>(cluster.peers[i], cluster.limits, source, opt,
                                                                        counters_));
    }

    // Copies `record` of `key` to peer `target`; `done` is called exactly once, perhaps before
    // this returns, perhaps on the link's thread.
    void send(std::size_t target, protocol::table_id t, std::string_view key, std::string_view record, ack_fn done) {
        links_.at(target)->send(t, key, record, std::move(done));
    }

    void peer_is_up(std::size_t peer) {
        if (peer < links_.size() && links_[peer]) links_[peer]->peer_is_up();
    }

    void stop() {
        for (auto& l : links_)
            if (l) l->stop();
    }

    [[nodiscard]] std::size_t hints() const {
        std::size_t n = 0;
        for (const auto& l : links_)
            if (l) n += l->hints();
        return n;
    }
    [[nodiscard]] const replication_counters& counters() const noexcept { return counters_; }

private:
    replication_counters counters_;
    std::vector<std::unique_ptr<replica_link>> links_;
};

}  // namespace dhtkit
