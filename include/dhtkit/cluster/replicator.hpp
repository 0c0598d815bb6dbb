#pragma once
// The replicator: copies the records of writes to the other holders of their slots, and tells
// the writer when each copy was applied or could not be delivered. One replica_link (a long-lived
// connection and a thread) per node it copies to, made the first time the map sends a copy there;
// see cluster/replica_link.hpp for how a link pipelines, batches, and remembers what a down
// replica missed. Which nodes those are is the cluster map's business, not the replicator's.

#include <cstddef>
#include <memory>
#include <mutex>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "dhtkit/cluster/cluster_map.hpp"
#include "dhtkit/cluster/replica_link.hpp"
#include "dhtkit/concurrency/locks.hpp"
#include "dhtkit/protocol/messages.hpp"

namespace dhtkit {

class replicator {
public:
    // `hello`: what its links say first on each connection (this node's map digest and source).
    // `grants`: the read leases this node grants, which a failed copy must outwait; `held`: the
    // leases it holds, whose grantors answer (either may be null).
    replicator(protocol::limits lim, record_source source, protocol::hello_request hello = {}, replicator_options opt = {},
               lease_grants* grants = nullptr, const lease_holdings* held = nullptr)
        : limits_(lim), source_(std::move(source)), hello_(std::move(hello)), options_(opt), grants_(grants), held_(held) {}
    replicator(const replicator&) = delete;
    replicator& operator=(const replicator&) = delete;
    ~replicator() { stop(); }

    // Copies `record` of `key` to node `target`; `done` is called exactly once, perhaps before
    // this returns, perhaps on the link's thread.
    void send(const node& target, protocol::table_id t, std::string_view key, std::string_view record, ack_fn done) {
        auto* l = link(target);
        if (!l) {  // stopping
            counters_.missed.fetch_add(1, std::memory_order_relaxed);
            if (done) done(false);
            return;
        }
        l->send(t, key, record, std::move(done));
    }

    // Asks node `target` for its own record of `key` (op: get or search); see replica_link::ask.
    void ask(const node& target, protocol::opcode op, std::string_view key, read_fn answer) {
        auto* l = link(target);
        if (!l) return answer(false, {});
        l->ask(op, key, std::move(answer));
    }

    // Node `id` says it is up again: stop skipping it, and re-send what it missed.
    void peer_is_up(node_id id) {
        read_guard guard(lock_);
        if (auto it = links_.find(id); it != links_.end()) it->second->peer_is_up();
    }

    void stop() {
        {
            std::lock_guard guard(lock_);
            stopped_ = true;
        }
        for (auto& [id, l] : links_) l->stop();
        for (auto& l : retired_) l->stop();
    }

    [[nodiscard]] std::size_t hints() const {
        read_guard guard(lock_);
        std::size_t n = 0;
        for (const auto& [id, l] : links_) n += l->hints();
        return n;
    }
    [[nodiscard]] const replication_counters& counters() const noexcept { return counters_; }

private:
    // The link to `target`, made on first use. A node whose address changed in a newer map gets
    // a new link; the old one finishes its copies when the replicator stops.
    replica_link* link(const node& target) {
        {
            read_guard guard(lock_);
            if (stopped_) return nullptr;
            auto it = links_.find(target.id);
            if (it != links_.end() && it->second->target().host == target.host && it->second->target().port == target.port)
                return it->second.get();
        }
        std::lock_guard guard(lock_);
        if (stopped_) return nullptr;
        auto& l = links_[target.id];
        if (!l || l->target().host != target.host || l->target().port != target.port) {
            if (l) retired_.push_back(std::move(l));
            l = std::make_unique<replica_link>(target, limits_, source_, hello_, options_, counters_, grants_, held_);
        }
        return l.get();
    }

    protocol::limits limits_;
    record_source source_;
    protocol::hello_request hello_;
    replicator_options options_;
    lease_grants* grants_;
    const lease_holdings* held_;
    replication_counters counters_;
    mutable shared_spinlock lock_;
    std::unordered_map<node_id, std::unique_ptr<replica_link>> links_;  // guarded by lock_
    std::vector<std::unique_ptr<replica_link>> retired_;                // guarded by lock_
    bool stopped_ = false;                                              // guarded by lock_
};

}  // namespace dhtkit
