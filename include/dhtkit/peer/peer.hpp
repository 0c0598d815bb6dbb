#pragma once
// dhtkit::peer composes the policies and services into one node of the cluster: an index server
// (keys and the file registry), a file server, and a client of the other nodes. It owns their
// lifetimes and starts and stops them in order; what a request does is the services' business.
//
//   Reactor      net/reactor.hpp           the listener's loop (and each worker's, with loop dispatch)
//   Executor     concurrency/thread_pool   the workers of pool dispatch
//   Table        store/locked_table.hpp    keys and the file registry
//   Replication  cluster/replication.hpp   which nodes hold each slot; when a write is acknowledged
//   Storage      store/storage.hpp         what a node keeps beyond its table (the log), and replays
// Run-time choices come from the settings: the dispatch model, R, the limits, the nodes.
//
// A request flows one way: listener -> dispatch -> the pump of the connection's front (our frames
// or RESP) -> key, file or sync service -> table -> replicator -> the reply in the connection's
// output (docs/architecture.md walks it header by header).
//
// At start the peer listens first, then catches up from the other holders of its slots while
// answering client requests with `unavailable`, then serves. Why listen first: copies of new writes
// must reach this node from the moment its catch-up snapshot is taken, or a write made in between
// would be missing here. A node asked for a sync first marks the asker up (its writes go straight
// there), then streams the snapshot.

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include <fmt/format.h>

#include "dhtkit/cluster/cluster_map.hpp"
#include "dhtkit/cluster/lease_keeper.hpp"
#include "dhtkit/cluster/lease_rules.hpp"
#include "dhtkit/cluster/leases.hpp"
#include "dhtkit/cluster/map_diff.hpp"
#include "dhtkit/cluster/membership.hpp"
#include "dhtkit/cluster/replication.hpp"
#include "dhtkit/cluster/replicator.hpp"
#include "dhtkit/concurrency/service.hpp"
#include "dhtkit/concurrency/thread_pool.hpp"
#include "dhtkit/log/logger.hpp"
#include "dhtkit/net/acceptor.hpp"
#include "dhtkit/net/reactor.hpp"
#include "dhtkit/net/socket.hpp"
#include "dhtkit/peer/client.hpp"
#include "dhtkit/peer/data_age.hpp"
#include "dhtkit/peer/dispatch.hpp"
#include "dhtkit/peer/file_service.hpp"
#include "dhtkit/peer/front/binary.hpp"
#include "dhtkit/peer/front/resp.hpp"
#include "dhtkit/peer/healer.hpp"
#include "dhtkit/peer/key_service.hpp"
#include "dhtkit/peer/live_membership.hpp"
#include "dhtkit/peer/pump.hpp"
#include "dhtkit/peer/settings.hpp"
#include "dhtkit/peer/stats.hpp"
#include "dhtkit/peer/sync_service.hpp"
#include "dhtkit/peer/table_upkeep.hpp"
#include "dhtkit/store/locked_table.hpp"
#include "dhtkit/store/storage.hpp"

namespace dhtkit {

template <net::reactor Reactor = net::epoll_reactor, executor Executor = thread_pool,
          string_table Table = locked_table<std::string, std::string>, replication_policy Replication = static_backup,
          storage_policy Storage = any_storage>
class peer {
public:
    // Node `id` of `cluster`, its map the static one the settings describe (nodes in file order).
    peer(cluster_settings cluster, node_id id)
        : cluster_(std::move(cluster)),
          self_(cluster_.peer(id)),
          policy_(cluster_.backups, cluster_.consistency_rule),
          view_(std::make_shared<cluster_view>(initial_cluster_map(cluster_, policy_))),
          client_(view_, cluster_.limits, {}, cluster_.source.string(), cluster_.cluster_key, cluster_.client_password),
          held_(lease_grantor_ids(view_->current(), self_.id, policy_)),
          copies_(frame_limits(), [this](protocol::table_id t, std::string_view key) { return keys_.index().record_of(t, key); },
                  hello(), {}, &grants_, &held_),
          storage_(self_.data_dir, cluster_.storage),
          keys_(key_table_, file_table_, self_.id, cluster_.limits, cluster_.max_clock_skew, *view_, policy_, copies_,
                [this](log_level l, std::string_view line) { log_(l, line); }, &held_, &storage_,
                Replication::follows_membership ? &hand_offs_ : nullptr, cluster_.min_copies),
          sync_(keys_.index(), self_.id, *view_, copies_, frame_limits(), hello(), &grants_, &storage_,
                Replication::follows_membership ? &hand_offs_ : nullptr),
          keeper_(self_.id, held_, frame_limits(), hello(), grants_.options(),
                  [this](node_id with, bool ask_it, const std::function<void()>& waiting) {
                      return sync_.catch_up_again(with, ask_it, waiting, log_);
                  },
                  [this](node_id id) {
                      // A grant after every lease had lapsed: this node was cut off (or stopped).
                      // Commands its RESP clients sent meanwhile may still be on their way, held
                      // by the network; they are not run late (RESP writes carry no version of
                      // their client's): every RESP connection is reset first.
                      if (dispatch_ && none_of_the_leases_current()) {
                          if (auto n = dispatch_->reset(resp_pump_))
                              log_(fmt::format("read leases back after losing them all: {} RESP connections reset, so "
                                               "that commands held meanwhile are not run late",
                                               n));
                      }
                      copies_.peer_is_up(id);
                  },
                  [this] { return lease_map(view_->current(), policy_); }),
          files_(self_, *view_, client_,
                 [this](protocol::opcode op, std::string_view k, std::string_view v) { return keys_.write_here(op, k, v); },
                 stats_),
          binary_(keys_, files_, sync_, self_.id, *view_, cluster_.source.string(), cluster_.limits, stats_,
                  [this] { return stats_report(); }, [this](log_level l, std::string_view line) { log_(l, line); }, &grants_,
                  cluster_.cluster_key, cluster_.client_password,
                  Replication::follows_membership ? std::function<reply()>([this] { return begin_leave(); }) : nullptr),
          resp_(self_.id, *view_, cluster_.limits, cluster_.client_password,
                {[this](const protocol::frame_view& f, connection& c) { binary_.answer(f, c); },
                 [this] { return stats_figures(); }, [this] { return keys_.index().live_keys(); },
                 cluster_.storage.log ? "yes" : "no",
                 cluster_.resp_forward ? std::function<reply(protocol::opcode, std::string_view, std::string_view, std::uint8_t)>(
                                             [this](protocol::opcode op, std::string_view k, std::string_view v, std::uint8_t flags) {
                                                 return client_.call_key(op, k, v, flags);
                                             })
                                       : nullptr,
                 [this](std::string_view name) { return files_.announce(name); },
                 [this](std::string_view name) { return files_.withdraw(name); }, [this] { stats_.wrong_password(); }}),
          binary_pump_(binary_, pump_limits{cluster_.limits.max_in_flight, cluster_.limits.max_output_bytes},
                       cluster_.client_password),
          resp_pump_(resp_, pump_limits{cluster_.limits.max_in_flight, cluster_.limits.max_output_bytes},
                     cluster_.client_password) {
        std::filesystem::create_directories(self_.data_dir);
    }
    peer(const peer&) = delete;
    peer& operator=(const peer&) = delete;
    ~peer() { stop(); }

    // Listens, catches up (answering clients `unavailable` meanwhile), serves; then registers the
    // files of the shared folder in the background (their homes may not be up yet). Each part is
    // noted as it starts (concurrency/service.hpp): stop() stops them in the reverse order, and
    // so does a start that throws half-way.
    void start() {
        running_.start([this] { start_parts(); });
    }

    // Stops accepting, answers what the clients already sent (their writes copied first), closes:
    // the parts in the reverse of the order they started in.
    void stop() {
        if (!started_.exchange(false)) return;
        running_.stop_all();
    }

    [[nodiscard]] const net::endpoint& local() const noexcept { return listener_.local(); }
    [[nodiscard]] const peer_settings& self() const noexcept { return self_; }
    [[nodiscard]] const cluster_map& map() const noexcept { return view_->current(); }
    [[nodiscard]] client& cluster_client() noexcept { return client_; }
    [[nodiscard]] peer_stats& stats() noexcept { return stats_; }
    // Where the peer's own lines go, with their levels (log/logger.hpp); stderr under the
    // library's name by default. Before start().
    void on_log(logger log) { log_ = std::move(log); }

    // Leaves a live cluster (peer/live_membership.hpp): its slots go to their new holders, and
    // this waits up to `limit` until every member caught them up. Stop the peer after. The
    // prompt's `leave`.
    reply leave(std::chrono::milliseconds limit = std::chrono::seconds(60)) { return membership_.leave(limit); }
    // The `leave` request: leaving on a thread of its own, answered at once; `on_left` (set
    // before start) is called when it ends, with the outcome (dhtkit-peer then stops).
    reply begin_leave() { return membership_.begin_leave(); }
    void on_left(std::function<void(const reply&)> f) { membership_.on_left(std::move(f)); }

    // Registers NAME from this node's shared folder, or withdraws it (the prompt's commands).
    reply announce(std::string_view name) { return files_.announce(name); }
    reply withdraw(std::string_view name) { return files_.withdraw(name); }

    // Every figure of this node: its counters, the map as it sees it, copies, catch-up,
    // membership and storage. The `stats` reply and RESP INFO render them.
    [[nodiscard]] figures stats_figures() const {
        const auto& m = map();
        const auto [home, held] = slots_of(m, self_.id);
        figures f;
        stats_.report(f, key_table_.size(), file_table_.size());
        f.add("state", sync_.serving() ? "serving" : "catching_up");
        f.add("node_id", self_.id);
        f.add("epoch", m.epoch());
        f.add("nodes", m.nodes().size());
        f.add("slots_home", home);
        f.add("slots_held", held);
        f.add("backups", files_.backups().size());
        add_copies(f, copies_);
        add_catch_up(f, sync_);
        f.add("refused_ahead", keys_.index().refused_ahead());
        f.add("min_copies", cluster_.min_copies);
        f.add("single_copy_writes", keys_.single_copy_writes());
        f.add("tombstones_purged", upkeep_.purged());
        membership_.report(f, m);
        add_storage(f, storage_.report(), storage_.recovery());
        return f;
    }
    [[nodiscard]] std::string stats_report() const { return stats_figures().lines(); }

private:
    void start_parts() {
        if (!cluster_.cluster_key)
            log_.warning("the cluster is open (no [security] cluster_secret_file): any host that reaches this port "
                         "can replicate, sync and register files here");
        if (cluster_.storage.log) data_age::refuse_if_older_than(self_.data_dir, cluster_.tombstone_purge, self_.id);
        // What this node kept beyond its table comes back first; the replicas then fill in the rest.
        storage_.open([this](std::string_view key, std::string_view record) { keys_.index().apply(key, record, true); },
                      [this](const replay_fn& each) { keys_.index().for_each_record(each); });
        running_.started("storage", storage_);
        running_.started("replicator", copies_);  // every write answered below is copied through it
        say_recovery(storage_.recovery(), log_);
        files_.start(log_);
        running_.started("file service", files_);
        dispatch_ = std::make_unique<any_dispatch<Reactor, Executor>>(cluster_.dispatch, reactor_, cluster_.pool_threads,
                                                                      cluster_.limits.idle_timeout, stats_);
        running_.started("dispatch", *dispatch_);  // answers what the clients sent, their writes copied
        listener_ = net::tcp_listener::bind(net::endpoint::resolve(self_.host, self_.port));
        running_.started("listeners", [this] {
            listener_.close();  // new connections are refused, as by a node that is gone
            resp_listener_.close();
        });
        (void)grants_.follow(lease_map(view_->current(), policy_));  // nothing granted yet: nothing to wait for
        if constexpr (Replication::follows_membership) membership_.start(listener_.local().port());
        running_.started("membership", membership_);  // gossips from now on; noted again once followed
        grants_.start();  // from now on a holder that excused this node as gone can learn it is back
        reactor_.add(listener_.fd(), net::interest::read, net::trigger::level, [this](net::readiness) { accept_all(); });
        if (self_.resp_port) {
            resp_listener_ = net::tcp_listener::bind(net::endpoint::resolve(self_.host, self_.resp_port));
            resp_listener_.enable_receive_stamps();
            reactor_.add(resp_listener_.fd(), net::interest::read, net::trigger::level,
                         [this](net::readiness) { accept_all(true); });
        }
        keys_.index().purge_after(cluster_.tombstone_purge);
        reactor_.every(std::chrono::milliseconds(100), [this] {  // peer/table_upkeep.hpp
            const auto& m = map();
            stats_.reclaimed(upkeep_.tick(m, Table::shard_count, [&, now = stamp_now()](slot_t s) {
                return sync_.agreements().agreed_by_all(s, m.holders(s), self_.id, now);
            }));
        });
        loop_ = std::thread([this] { reactor_.run(); });
        running_.started("listener loop", [this] {
            reactor_.stop();
            loop_.join();
        });
        started_ = true;
        sync_.catch_up_now(log_);
        healer_.start();  // healing (live maps) and anti-entropy, from now on
        running_.started("healer", healer_);
        // From now on each change of the view is followed; the changes heard while this node
        // caught up from its first map are taken in one step.
        membership_.follow_from_now();
        running_.started("membership", membership_);  // stops following before the healer stops
        for (const auto& n : grantors()) held_.add(n.id);
        keeper_.start(grantors());  // reads and writes wait for the first grants (or excuses)
        keeper_started_.store(true, std::memory_order_release);
        running_.started("lease keeper", keeper_);
        // Noted last, so stopped first: the healer and the lease keeper each wait for the
        // catch-up in hand when they stop, and a stopping sync service ends it.
        running_.started("catch-ups", sync_);
        membership_.with_view([this](const membership&) { share_leases(); });  // what changed meanwhile
        keeper_.wait_first_answers(std::chrono::seconds(10));
        files_.announce_folder();
    }

    // Read leases from every node this one now shares slots with: a member that joined, or this
    // node's co-holders once it joined itself. Entries are only ever added. Asked at once: under
    // "majority" a lease counts only under the map it was asked under.
    void share_leases() {
        for (const auto& n : grantors()) {
            held_.add(n.id);
            if (keeper_started_.load(std::memory_order_acquire)) keeper_.add(n);
        }
        keeper_.renew_now();
    }

    // While nothing this node serves is unconfirmed (sync_service::unconfirmed), a node with a
    // log notes that its data is up to date (peer/data_age.hpp). The healer's thread, every 10 s.
    void note_confirmed() {
        if (cluster_.storage.log && sync_.unconfirmed() == 0) data_age::note_confirmed(self_.data_dir);
    }

    // No read lease from any grantor is current (a node with none to hold: false).
    [[nodiscard]] bool none_of_the_leases_current() const {
        bool held_any = false;
        return !held_.any_valid(held_any) && held_any;
    }

    // Where this node's read leases come from (cluster/lease_rules.hpp).
    std::vector<node> grantors() const { return lease_grantors(view_->current(), self_.id, policy_); }

    // What this node says first on every connection it opens.
    // No password: what a node asks of another node is the cluster secret's business, not the password's.
    protocol::hello_request hello() const {
        return {view_->current().hello_digest(), cluster_.source.string(), cluster_.cluster_key, {}};
    }

    protocol::limits frame_limits() const noexcept {
        return protocol::frame_limits(cluster_.limits.max_key_bytes, cluster_.limits.max_value_bytes);
    }

    // On the listener thread.
    void accept_all(bool resp = false) {
        intake_.accept_all(resp ? resp_listener_ : listener_, [&](net::tcp_stream s) {
            if (resp) s.enable_receive_stamps();  // a RESP write is stamped when it arrived (front/resp.hpp)
            dispatch_->adopt(std::move(s), resp ? static_cast<any_pump&>(resp_pump_) : binary_pump_);
        });
    }

    // Declared in the order they are made; destroyed in reverse.
    cluster_settings cluster_;
    peer_settings self_;
    Replication policy_;
    std::shared_ptr<cluster_view> view_;
    client client_;
    peer_stats stats_;
    Table key_table_;
    Table file_table_;
    lease_grants grants_;
    lease_holdings held_;
    hand_offs hand_offs_;  // live membership: the nodes taking slots over from this one
    replicator copies_;
    Storage storage_;
    key_service<Table, Replication, Storage> keys_;
    sync_service<Table, Storage> sync_;
    lease_keeper keeper_;
    file_service files_;
    binary_front<Table, Replication, Storage> binary_;
    resp_front resp_;
    pump<binary_front<Table, Replication, Storage>> binary_pump_;
    pump<resp_front> resp_pump_;
    logger log_ = logger::to_stderr(fmt::format("dhtkit peer {}", self_.id));

    Reactor reactor_;
    net::tcp_listener listener_;
    net::tcp_listener resp_listener_;  // open when this node has a resp_port
    std::unique_ptr<any_dispatch<Reactor, Executor>> dispatch_;
    healer<sync_service<Table, Storage>> healer_{sync_, [this] { files_.recopy(); }, [this] { note_confirmed(); },
                                        cluster_.membership.anti_entropy, [this](log_level l, std::string_view line) { log_(l, line); }};
    live_membership<Table, Replication, Storage> membership_{{cluster_, self_, policy_, *view_, sync_, keys_, grants_, healer_,
                                                     hand_offs_, client_, [this] { share_leases(); },
                                                     [this] { return started_.load(std::memory_order_acquire); },
                                                     [this](log_level l, std::string_view line) { log_(l, line); }}};
    std::atomic<bool> keeper_started_{false};
    net::acceptor intake_;  // the listeners' (shedding a connection when out of descriptors)
    std::thread loop_;
    std::atomic<bool> started_{false};
    table_upkeep<index_service<Table>> upkeep_{keys_.index()};  // the listener loop's
    service_stack running_;  // last: destroyed first, so a start that threw stops what it started
};

}  // namespace dhtkit
