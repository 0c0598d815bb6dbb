#pragma once
// Live membership (the dynamic policies): failure detection and gossip on UDP at this node's own
// port number (cluster/failure_detector.hpp); each change of the view becomes a new map, which
// this component places, publishes and acts on; and leaving, which hands this node's slots over.
//
// Following a map (on the detector's thread): the slots this node gains wait (answer
// `unavailable`) from before the map is published until the healer has their records; under
// "majority", a map that places slots anew is acted on only once every lease this node granted
// under the old one has run out (key_service::act_after); a member back from the dead is marked "behind" by this node's
// grants before the map is published (docs/replication.md, "Majority across map changes").
// Nothing is followed before the catch-up at start is done (follow_from_now): that catch-up marks
// every slot it covered ready at its end, and the changes heard meanwhile are taken in one step.

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "dhtkit/cluster/cluster_map.hpp"
#include "dhtkit/cluster/failure_detector.hpp"
#include "dhtkit/cluster/hand_offs.hpp"
#include "dhtkit/cluster/lease_rules.hpp"
#include "dhtkit/cluster/leases.hpp"
#include "dhtkit/cluster/map_diff.hpp"
#include "dhtkit/cluster/membership.hpp"
#include "dhtkit/cluster/replication.hpp"
#include "dhtkit/log/logger.hpp"
#include "dhtkit/net/address.hpp"
#include "dhtkit/peer/client.hpp"
#include "dhtkit/peer/figures.hpp"
#include "dhtkit/peer/healer.hpp"
#include "dhtkit/peer/key_service.hpp"
#include "dhtkit/peer/reply.hpp"
#include "dhtkit/peer/settings.hpp"
#include "dhtkit/peer/sync_service.hpp"
#include "dhtkit/store/storage.hpp"

namespace dhtkit {

template <string_table Table, replication_policy Replication, storage_policy Storage = any_storage>
class live_membership {
public:
    using log_fn = logger;

    // What it acts on: the peer's parts, which outlive it.
    struct parts {
        const cluster_settings& cluster;
        const peer_settings& self;
        const Replication& policy;
        cluster_view& view;
        sync_service<Table, Storage>& sync;
        key_service<Table, Replication, Storage>& keys;
        lease_grants& grants;
        healer<sync_service<Table, Storage>>& heal;
        const hand_offs& handing;
        client& others;
        std::function<void()> share_leases;  // a new map: lease from its members, asked at once
        std::function<bool()> serving;       // false once the peer stops: leaving stops waiting
        log_fn log;
    };

    explicit live_membership(parts p) : p_(std::move(p)) {}
    live_membership(const live_membership&) = delete;
    live_membership& operator=(const live_membership&) = delete;
    ~live_membership() { stop(); }

    // Starts failure detection on UDP `port` (the peer's TCP port number).
    void start(std::uint16_t port) {
        std::vector<node> seeds;
        std::vector<net::endpoint> seed_addresses;
        for (const auto& peer : p_.cluster.peers) {
            if (peer.id == p_.self.id || !peer.seed) continue;
            seeds.push_back({peer.id, peer.host, peer.port, node_state::member, peer.resp_port});
            seed_addresses.push_back(net::endpoint::resolve(peer.host, peer.port));
        }
        // A peer joining from outside the file asks the member it was given first.
        if (!p_.cluster.join.empty()) seed_addresses.insert(seed_addresses.begin(), net::endpoint::parse(p_.cluster.join));
        membership view({p_.self.id, p_.self.host, p_.self.port, node_state::member, p_.self.resp_port}, std::move(seeds),
                        p_.cluster.membership);
        detector_ = std::make_unique<failure_detector>(
            std::move(view), std::move(seed_addresses), p_.view.current().hello_digest(), p_.cluster.cluster_key,
            [this](const membership& v) { follow(v); }, [this](log_level l, std::string_view line) { p_.log(l, line); });
        p_.sync.pace_healing(p_.cluster.heal_bytes_per_s);
        detector_->start(net::endpoint::resolve(p_.self.host, port));
    }

    // Once the catch-up at start is done: each change of the view is followed from now on, and
    // the changes heard meanwhile are taken in one step.
    void follow_from_now() {
        if (!detector_) return;
        following_.store(true, std::memory_order_release);
        detector_->with_view([this](const membership& v) { follow(v); });
    }
    // Runs `f` under the view's lock (what changed while the caller was busy is then in it).
    template <class F>
    void with_view(F&& f) const {
        if (detector_) detector_->with_view(std::forward<F>(f));
    }

    void stop() {
        {
            std::lock_guard lock(leave_mutex_);
            if (leaver_.joinable() && leaver_.get_id() != std::this_thread::get_id()) leaver_.join();
        }
        if (detector_) detector_->stop();
    }

    // Leaves the cluster: says so (every member takes this node for departed and its slots move
    // to their new holders), then waits up to `limit` until every member has heard it and caught
    // up the slots it gained, serving meanwhile (the new holders catch up from here, and writes
    // that reach this node are copied to them). The caller's thread; stop the peer after.
    reply leave(std::chrono::milliseconds limit) {
        if (!detector_) return {protocol::status::bad_request, {}, "leave needs [replication] policy = \"dynamic\"", true};
        if (left_.exchange(true)) return {protocol::status::ok, "left already", {}, true};
        const auto t0 = std::chrono::steady_clock::now();
        const auto slots = slots_of(p_.view.current(), p_.self.id).held;
        detector_->leave();
        p_.log(fmt::format("leaving: handing {} slots over", slots));
        std::string waiting;
        while (std::chrono::steady_clock::now() - t0 < limit && p_.serving()) {
            waiting.clear();
            for (const auto& n : p_.view.current().nodes()) {
                if (n.id == p_.self.id || !placed(n.state)) continue;
                auto r = p_.others.call(n.id, protocol::opcode::stats, {});
                if (!r.ok()) continue;  // gone meanwhile: nothing to wait for there
                // Another node's stats reply, read at the edge: its view of this node, and what
                // it has still to catch up.
                const auto members = "," + stat_line(r.value, "members") + ",";
                if (members.find(fmt::format(",{}:left,", p_.self.id)) == std::string::npos ||
                    stat_line(r.value, "under_replicated_slots") != "0")
                    waiting += fmt::format("{}{}", waiting.empty() ? "" : ", ", n.id);
            }
            if (waiting.empty()) {
                auto said = fmt::format("left: {} slots handed over in {:.1f} s", slots,
                                        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
                p_.log(said);
                return {protocol::status::ok, said, {}, true};
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the caller's thread, never a loop
        }
        return {protocol::status::unavailable, {},
                fmt::format("left, but peers {} had not caught up after {} ms", waiting, limit.count()), true};
    }

    // The `leave` request: leaving on a thread of its own, answered at once; `on_left` (set
    // before start) is called when it ends, with the outcome (dhtkit-peer then stops).
    reply begin_leave() {
        std::lock_guard lock(leave_mutex_);
        if (leaver_.joinable()) return {protocol::status::ok, "already leaving", {}, true};
        leaver_ = std::thread([this] {
            auto r = leave(std::chrono::seconds(60));
            if (on_left_) on_left_(r);
        });
        return {protocol::status::ok,
                fmt::format("peer {} is leaving: its slots go to their new holders, then it stops", p_.self.id), {}, true};
    }
    void on_left(std::function<void(const reply&)> f) { on_left_ = std::move(f); }

    // Its figures, after the peer's own.
    void report(figures& f, const cluster_map& m) const {
        if (!detector_) {
            f.add("membership", "static");
            f.add("anti_entropy_passes", p_.sync.repairs());
            f.add("slots_unconfirmed", p_.sync.unconfirmed());
            return;
        }
        std::size_t alive = 0;
        std::string states;
        for (const auto& n : m.nodes()) {
            alive += placed(n.state) ? 1 : 0;
            states += fmt::format("{}{}:{}", states.empty() ? "" : ",", n.id, to_string(n.state));
        }
        const auto& c = detector_->stats();
        auto load = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
        f.add("membership", "dynamic");
        f.add("members_alive", alive);
        f.add("members", std::move(states));
        f.add("probes", load(c.probes));
        f.add("indirect_probes", load(c.indirect_probes));
        f.add("suspicions", load(c.suspicions));
        f.add("gossip_refused", load(c.refused));
        f.add("under_replicated_slots", p_.sync.waiting_count());
        f.add("handing_off_to", p_.handing.active());
        f.add("anti_entropy_passes", p_.sync.repairs());
        f.add("slots_unconfirmed", p_.sync.unconfirmed());
        f.add("healed_records", p_.sync.healed_records());
        f.add("healed_bytes", p_.sync.healed_bytes());
        f.add("healing_seconds", p_.sync.healing_seconds(), 3);
    }

private:
    // On the detector's thread: the view changed (see the top of the file).
    void follow(const membership& v) {
        const auto& before = p_.view.current();
        if (!following_.load(std::memory_order_acquire) || v.epoch() <= before.epoch()) return;
        for (const auto& m : v.members()) {
            const node* was = before.find(m.at.id);
            if (!was || was->state != m.at.state)
                p_.log(m.at.state == node_state::failed ? log_level::warning : log_level::info,  // dead needs a look
                       fmt::format("membership: peer {} ({}:{}) is {} (incarnation {})", m.at.id, m.at.host, m.at.port,
                                   to_string(m.at.state), m.incarnation));
        }
        auto nodes = v.nodes();
        auto slots = p_.policy.place(nodes);
        cluster_map after(v.epoch(), std::move(nodes), std::move(slots), before.hello_digest());
        auto change = changes(before, after, p_.self.id);
        if (!change.gained.empty()) {
            std::vector<slot_range> ranges;
            for (const auto& g : change.gained) ranges.push_back(g.first);
            p_.sync.mark_waiting(ranges);
        }
        // Members back from being taken for dead (a pause, a partition): what each side wrote
        // meanwhile is compared and pulled now, not at the next anti-entropy pass.
        // Under "majority", leases pass only between nodes whose maps place slots alike, and a
        // node acts on a new placement only once every lease it granted under the old one has
        // run out: one that still follows the old map (or took this node's grant under it) could
        // vouch for a copy of a slot this node now acknowledges without it (docs/replication.md,
        // rule 4). A map that declares members dead is one such change.
        if (const auto map = lease_map(after, p_.policy); map && map != p_.grants.following())
            p_.keys.act_after(p_.grants.follow(map));
        // A member back missed what was written while this node's map left it out, and its own
        // map may never have left itself out (a node refutes its own death), so it gains nothing
        // to catch up by itself: it gets no read lease from here until it has caught up from here
        // (its lease keeper hears "behind" and asks for the stream). Before the map is published,
        // so that no lease is granted to it in between.
        for (auto id : change.back) (void)p_.grants.missed(id);
        p_.view.publish(std::move(after));
        p_.share_leases();
        if (!change.gained.empty() || change.placement_moved || !change.back.empty())
            p_.heal.push({std::move(change.gained), change.placement_moved, std::move(change.back)});
    }

    // The value of one "name=value" line of a stats report; empty when absent.
    [[nodiscard]] static std::string stat_line(const std::string& report, std::string_view name) {
        const auto text = "\n" + report;
        const auto at = text.find(fmt::format("\n{}=", name));
        if (at == std::string::npos) return {};
        const auto start = at + name.size() + 2;
        return text.substr(start, text.find('\n', start) - start);
    }

    parts p_;
    std::unique_ptr<failure_detector> detector_;
    std::atomic<bool> following_{false};
    std::atomic<bool> left_{false};
    std::mutex leave_mutex_;
    std::thread leaver_;  // guarded by leave_mutex_: the `leave` request's
    std::function<void(const reply&)> on_left_;
};

}  // namespace dhtkit
