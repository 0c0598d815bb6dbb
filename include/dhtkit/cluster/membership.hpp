#pragma once
// The membership view of a live cluster, as SWIM keeps it: every node's record (where it
// listens, its state, its incarnation number), the rules that decide which of two records about
// one node wins, the suspicion timers, which member to probe next and which news to piggyback on
// the next message. Pure state: the failure detector (cluster/failure_detector.hpp) does the
// sending and the timing and calls in here; the tests drive it with a clock of their own.
//
// A record is (state, incarnation). Only a node itself raises its own incarnation: when it hears
// that it is suspected or dead at its current incarnation (or above, as after a restart that
// forgot it), it answers "alive" one above, which beats the suspicion everywhere it spreads. That
// is SWIM's refutation, and memberlist's precedence rules:
//   alive(i)    wins over any record of incarnation below i;
//   suspect(i)  wins over alive of incarnation <= i, and over suspect below i;
//   dead(i)     wins over alive or suspect of incarnation <= i, and over dead below i;
//   left(i)     wins over anything of incarnation <= i that is not left: the node said goodbye.
// Each rule raises the record's rank 4 * incarnation + (0 alive, 1 suspect, 2 dead, 3 left), so the
// sum of the ranks (plus one per known node) grows with every change this node accepts. That sum
// is the view's epoch: a node that has heard every change another has heard has an epoch at least
// as high, and two nodes that heard the same changes, in any order, have the same view and epoch.
//
// Members are never forgotten: a dead or departed node stays in the view (a few dozen bytes), so
// that an old "alive" about it, arriving late, cannot bring it back.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <vector>

#include "dhtkit/cluster/cluster_map.hpp"

namespace dhtkit {

struct member {
    node at;  // at.state: member (alive), suspect, failed (dead) or left
    std::uint64_t incarnation = 0;
    friend bool operator==(const member&, const member&) = default;
};

struct membership_options {
    std::chrono::milliseconds probe_interval{1000};  // one probe of one member per interval
    std::chrono::milliseconds probe_timeout{500};    // a direct probe's ack, before asking others
    unsigned indirect_probes = 3;                    // members asked to probe for us when it fails
    // A suspicion becomes death after suspicion_mult * max(1, log10(members)) probe intervals.
    unsigned suspicion_mult = 3;
    // An update rides on retransmit_mult * ceil(log10(members + 1)) messages before it is dropped.
    unsigned retransmit_mult = 4;
    // A full exchange of views with one random member this often (joins, and partitions healing).
    std::chrono::milliseconds sync_interval{5000};
    // News, when there is any, goes to `gossip_fanout` random members this often besides riding
    // on probes: a suspicion or a death reaches everyone in a few hundred milliseconds.
    std::chrono::milliseconds gossip_interval{200};
    unsigned gossip_fanout = 3;
    // Holders of a slot compare it by digest and pull what differs this often (0: never); they
    // also do when a read lease from another holder comes back after lapsing.
    std::chrono::seconds anti_entropy{60};
};

class membership {
public:
    using clock = std::chrono::steady_clock;

    membership(node self, std::vector<node> seeds, membership_options opt = {}, std::uint64_t seed = std::random_device{}())
        : opt_(opt), self_id_(self.id), rng_(seed) {
        self.state = node_state::member;
        members_[self.id] = {member{self, 0}, {}};
        for (auto& s : seeds)
            if (s.id != self.id && !members_.count(s.id)) {
                s.state = node_state::member;
                members_[s.id] = {member{s, 0}, {}};
                queue(s.id);
            }
        queue(self_id_);
    }

    [[nodiscard]] const member& self() const { return members_.at(self_id_).record; }
    [[nodiscard]] const membership_options& options() const noexcept { return opt_; }

    // Every known node, dead and departed ones included, in id order.
    [[nodiscard]] std::vector<member> members() const {
        std::vector<member> out;
        for (const auto& [_, e] : members_) out.push_back(e.record);
        return out;
    }
    [[nodiscard]] std::vector<node> nodes() const {
        std::vector<node> out;
        for (const auto& [_, e] : members_) out.push_back(e.record.at);
        return out;
    }
    [[nodiscard]] const member* find(node_id id) const {
        auto it = members_.find(id);
        return it == members_.end() ? nullptr : &it->second.record;
    }
    [[nodiscard]] std::uint64_t epoch() const noexcept {
        std::uint64_t sum = 0;
        for (const auto& [_, e] : members_) sum += rank(e.record) + 1;
        return sum;
    }
    // Members alive or suspected (they hold slots), this node included.
    [[nodiscard]] std::size_t live() const noexcept {
        std::size_t n = 0;
        for (const auto& [_, e] : members_) n += placed(e.record.at.state) ? 1 : 0;
        return n;
    }

    // A record heard from another node. True when the view changed.
    bool apply(member u, clock::time_point now) {
        if (u.at.id == self_id_) return about_self(u);
        auto it = members_.find(u.at.id);
        if (it == members_.end()) {
            // A suspicion of a node never heard of says nothing about where it is.
            if (u.at.state == node_state::suspect) return false;
            it = members_.emplace(u.at.id, entry{u, {}}).first;
            if (u.at.state == node_state::suspect) it->second.suspected_at = now;
            queue(u.at.id);
            return true;
        }
        auto& cur = it->second.record;
        if (!wins(u, cur)) return false;
        // The address is the record's too: a node that restarted elsewhere says so with "alive".
        if (u.at.host.empty()) u.at.host = cur.at.host, u.at.port = cur.at.port, u.at.resp_port = cur.at.resp_port;
        const bool newly_suspect = u.at.state == node_state::suspect && cur.at.state != node_state::suspect;
        cur = u;
        if (newly_suspect) it->second.suspected_at = now;
        queue(u.at.id);
        return true;
    }

    // This node's own probe of `id` (direct and indirect) went unanswered.
    bool suspect(node_id id, clock::time_point now) {
        auto it = members_.find(id);
        if (it == members_.end() || id == self_id_ || it->second.record.at.state != node_state::member) return false;
        auto u = it->second.record;
        u.at.state = node_state::suspect;
        return apply(u, now);
    }

    // Suspicions that ran out become deaths. True when the view changed.
    bool tick(clock::time_point now) {
        bool changed = false;
        for (auto& [id, e] : members_) {
            if (e.record.at.state != node_state::suspect || now - e.suspected_at < suspicion_timeout()) continue;
            e.record.at.state = node_state::failed;
            queue(id);
            changed = true;
        }
        return changed;
    }

    [[nodiscard]] std::chrono::milliseconds suspicion_timeout() const noexcept {
        const double scale = std::max(1.0, std::log10(static_cast<double>(std::max<std::size_t>(1, live()))));
        return std::chrono::milliseconds(static_cast<std::int64_t>(
            static_cast<double>(opt_.suspicion_mult) * scale * static_cast<double>(opt_.probe_interval.count())));
    }

    // This node leaves: its own record says so, one incarnation up, and spreads like any other.
    void leave() {
        auto& me = members_.at(self_id_).record;
        ++me.incarnation;
        me.at.state = node_state::left;
        queue(self_id_);
    }

    // The next member to probe: every live member once per round, in an order shuffled per round.
    [[nodiscard]] std::optional<member> next_probe() {
        for (int pass = 0; pass < 2; ++pass) {
            while (probe_at_ < probe_order_.size()) {
                auto it = members_.find(probe_order_[probe_at_++]);
                if (it != members_.end() && placed(it->second.record.at.state)) return it->second.record;
            }
            probe_order_.clear();
            probe_at_ = 0;
            for (const auto& [id, e] : members_)
                if (id != self_id_ && placed(e.record.at.state)) probe_order_.push_back(id);
            std::shuffle(probe_order_.begin(), probe_order_.end(), rng_);
        }
        return std::nullopt;
    }

    // Up to `k` alive members other than this node and `target`, picked at random: they probe
    // `target` for this node when its direct probe failed.
    [[nodiscard]] std::vector<member> helpers(node_id target, std::size_t k) {
        std::vector<member> all;
        for (const auto& [id, e] : members_)
            if (id != self_id_ && id != target && e.record.at.state == node_state::member) all.push_back(e.record);
        std::shuffle(all.begin(), all.end(), rng_);
        if (all.size() > k) all.resize(k);
        return all;
    }

    // Up to `k` members to send news to, alive or suspect (a suspect must hear it is suspected).
    [[nodiscard]] std::vector<member> gossip_targets(std::size_t k) {
        std::vector<member> all;
        for (const auto& [id, e] : members_)
            if (id != self_id_ && placed(e.record.at.state)) all.push_back(e.record);
        std::shuffle(all.begin(), all.end(), rng_);
        if (all.size() > k) all.resize(k);
        return all;
    }

    // A member to exchange whole views with: usually a live one; one time in four a dead one, so
    // that two sides of a healed partition, each believing the other dead, find each other again.
    [[nodiscard]] std::optional<member> sync_partner() {
        std::vector<member> live_ones, dead_ones;
        for (const auto& [id, e] : members_) {
            if (id == self_id_) continue;
            if (placed(e.record.at.state)) live_ones.push_back(e.record);
            else if (e.record.at.state == node_state::failed) dead_ones.push_back(e.record);
        }
        auto pick = [&](std::vector<member>& v) { return v[std::uniform_int_distribution<std::size_t>(0, v.size() - 1)(rng_)]; };
        const bool to_dead = !dead_ones.empty() && (live_ones.empty() || std::uniform_int_distribution<int>(0, 3)(rng_) == 0);
        if (to_dead) return pick(dead_ones);
        if (!live_ones.empty()) return pick(live_ones);
        return std::nullopt;
    }

    // The news to piggyback on the next message: at most `most` records, those sent least first;
    // each goes out retransmit_mult * ceil(log10(N + 1)) times in all.
    [[nodiscard]] std::vector<member> news(std::size_t most) {
        const auto limit = static_cast<unsigned>(
            opt_.retransmit_mult *
            std::max(1.0, std::ceil(std::log10(static_cast<double>(members_.size() + 1)))));
        std::vector<std::pair<unsigned, node_id>> order;
        for (const auto& [id, sent] : pending_) order.push_back({sent, id});
        std::sort(order.begin(), order.end());
        std::vector<member> out;
        for (auto [sent, id] : order) {
            if (out.size() == most) break;
            out.push_back(members_.at(id).record);
            if (++pending_[id] >= limit) pending_.erase(id);
        }
        return out;
    }
    [[nodiscard]] std::size_t news_pending() const noexcept { return pending_.size(); }


private:
    struct entry {
        member record;
        clock::time_point suspected_at;
    };

    [[nodiscard]] static std::uint64_t rank(const member& m) noexcept {
        std::uint64_t r = 0;
        switch (m.at.state) {
            case node_state::suspect: r = 1; break;
            case node_state::failed: r = 2; break;
            case node_state::left: r = 3; break;
            default: r = 0; break;
        }
        return 4 * m.incarnation + r;
    }

    // Whether record `u` replaces `cur` (the rules at the top).
    [[nodiscard]] static bool wins(const member& u, const member& cur) noexcept {
        switch (u.at.state) {
            case node_state::member: return u.incarnation > cur.incarnation;
            case node_state::suspect:
                return (cur.at.state == node_state::member && u.incarnation >= cur.incarnation) ||
                       (cur.at.state == node_state::suspect && u.incarnation > cur.incarnation);
            case node_state::failed:
                return (dhtkit::placed(cur.at.state) &&
                        u.incarnation >= cur.incarnation) ||
                       (cur.at.state == node_state::failed && u.incarnation > cur.incarnation);
            case node_state::left: return cur.at.state != node_state::left && u.incarnation >= cur.incarnation;
            default: return false;
        }
    }

    // What others say about this node: a suspicion, a death or an older life is refuted by a
    // higher incarnation; so is a "left" this node never said (a replay, or a previous life's).
    bool about_self(const member& u) {
        auto& me = members_.at(self_id_).record;
        if (me.at.state == node_state::left) return false;
        const bool against = u.at.state != node_state::member ? u.incarnation >= me.incarnation : u.incarnation > me.incarnation;
        if (!against) return false;
        me.incarnation = u.incarnation + 1;
        queue(self_id_);
        return true;
    }

    void queue(node_id id) { pending_[id] = 0; }

    membership_options opt_;
    node_id self_id_;
    std::mt19937_64 rng_;
    std::map<node_id, entry> members_;
    std::map<node_id, unsigned> pending_;  // id -> times its current record was sent
    std::vector<node_id> probe_order_;
    std::size_t probe_at_ = 0;
};

}  // namespace dhtkit
