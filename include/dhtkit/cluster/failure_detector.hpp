#pragma once
// Failure detection and gossip, as SWIM does them, over UDP on the node's own port number. One
// thread of its own, never a loop's: every probe interval it probes one member (round robin in a
// shuffled order); a probe not acked within the probe timeout is retried through up to k other
// members (ping_req), and one still unacked at the end of the interval makes the member suspect.
// A suspect that does not refute (cluster/membership.hpp) within the suspicion timeout is dead.
// Every message carries the freshest news of the view (piggybacking); every sync interval, and
// at start until one answers, the whole view is swapped with one member (a seed at first). Each
// change of the view calls `on_change` on this thread, with the lock held: it must not call back.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <sodium.h>

#include <fmt/format.h>

#include "dhtkit/cluster/membership.hpp"
#include "dhtkit/log/logger.hpp"
#include "dhtkit/net/datagram.hpp"
#include "dhtkit/cluster/gossip.hpp"

namespace dhtkit {

class failure_detector {
public:
    using clock = std::chrono::steady_clock;
    using change_fn = std::function<void(const membership&)>;
    using log_fn = logger;

    struct counters {
        std::atomic<std::uint64_t> probes{0}, indirect_probes{0}, suspicions{0}, refused{0}, datagrams_in{0},
            datagrams_out{0};
    };

    // `view`: this node and the seeds. `seeds`: addresses to swap views with until one answers
    // (the configured peers, or --join's). `cluster`: the cluster's identity. `key`: its secret's
    // key, or null for an open cluster.
    failure_detector(membership view, std::vector<net::endpoint> seeds, std::uint64_t cluster,
                     std::shared_ptr<const protocol::cluster_key> key, change_fn on_change, log_fn log)
        : view_(std::move(view)), seeds_(std::move(seeds)), cluster_(cluster), key_(std::move(key)),
          on_change_(std::move(on_change)), log_(std::move(log)) {
        std::random_device rd;
        rng_.seed((std::uint64_t{rd()} << 32) ^ rd());
    }
    failure_detector(const failure_detector&) = delete;
    failure_detector& operator=(const failure_detector&) = delete;
    ~failure_detector() { stop(); }

    // Binds the UDP port (throws when it cannot) and starts the thread.
    void start(const net::endpoint& at) {
        socket_.emplace(net::udp_socket::bind(at));
        stopping_.store(false);
        thread_ = std::thread([this] { run(); });
    }
    void stop() {
        stopping_.store(true);
        if (thread_.joinable()) thread_.join();
    }

    // This node leaves: its "left" goes to every live member at once (and rides on what follows
    // until stop), so they stop sending it anything without waiting to suspect it.
    void leave() {
        std::lock_guard lock(mutex_);
        view_.leave();
        on_change_(view_);
        for (const auto& m : view_.members())
            if (m.at.id != view_.self().at.id && placed(m.at.state))
                send(m.at, message(protocol::gossip_kind::sync, 0, view_.members()));
    }

    // The view's current records, and its epoch, taken under the lock.
    [[nodiscard]] std::vector<member> members() const {
        std::lock_guard lock(mutex_);
        return view_.members();
    }
    [[nodiscard]] std::uint64_t epoch() const {
        std::lock_guard lock(mutex_);
        return view_.epoch();
    }
    // Calls f(view) under the lock, as on_change is called.
    template <class F>
    void with_view(F&& f) const {
        std::lock_guard lock(mutex_);
        f(view_);
    }
    [[nodiscard]] bool joined() const noexcept { return joined_.load(std::memory_order_acquire); }
    [[nodiscard]] const counters& stats() const noexcept { return counters_; }

private:
    struct probe {
        member target;
        std::uint64_t seq = 0;
        clock::time_point direct_deadline;
        bool acked = false;
        bool indirect_sent = false;
    };
    struct relay {
        net::endpoint to;  // the member that asked
        std::uint64_t seq = 0;  // its probe's seq
        clock::time_point expires;
    };

    [[nodiscard]] node_id self_id() const { return view_.self().at.id; }

    void run() {
        const auto& opt = view_.options();
        auto now = clock::now();
        auto next_round = now;
        auto next_sync = now;
        auto next_gossip = now;
        std::string buffer;
        while (!stopping_.load(std::memory_order_acquire)) {
            now = clock::now();
            {
                std::lock_guard lock(mutex_);
                if (now >= next_round) {
                    finish_probe(now);
                    start_probe(now);
                    next_round = now + opt.probe_interval;
                }
                if (probe_ && !probe_->acked && !probe_->indirect_sent && now >= probe_->direct_deadline) {
                    probe_->indirect_sent = true;
                    for (const auto& h : view_.helpers(probe_->target.at.id, opt.indirect_probes)) {
                        auto m = message(protocol::gossip_kind::ping_req, probe_->seq, news());
                        m.target = probe_->target.at;
                        send(h.at, m);
                        counters_.indirect_probes.fetch_add(1, std::memory_order_relaxed);
                    }
                }
                if (now >= next_gossip) {
                    if (view_.news_pending() > 0)
                        for (const auto& m : view_.gossip_targets(opt.gossip_fanout)) {
                            auto items = news();
                            if (items.empty()) break;
                            send(m.at, message(protocol::gossip_kind::gossip, 0, std::move(items)));
                        }
                    next_gossip = now + opt.gossip_interval;
                }
                if (now >= next_sync) {
                    sync_now();
                    // Until some node has answered, ask again soon: a cluster is starting.
                    next_sync = now + (joined() ? opt.sync_interval : std::chrono::milliseconds(300));
                }
                for (auto it = relays_.begin(); it != relays_.end();)
                    it = it->second.expires <= now ? relays_.erase(it) : std::next(it);
                if (view_.tick(now)) changed();
            }
            auto until = std::min({next_round, next_sync, next_gossip});
            if (probe_ && !probe_->indirect_sent) until = std::min(until, probe_->direct_deadline);
            auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(until - clock::now()) + std::chrono::milliseconds(1);
            wait = std::clamp(wait, std::chrono::milliseconds(1), std::chrono::milliseconds(100));
            if (!socket_->wait(wait)) continue;
            for (int n = 0; n < 64; ++n) {
                auto from = socket_->receive(buffer);
                if (!from) break;
                // Whatever a datagram holds, it must not end the thread that detects failures.
                try {
                    receive(*from, buffer);
                } catch (const std::exception& e) {
                    counters_.refused.fetch_add(1, std::memory_order_relaxed);
                    log_.warning(fmt::format("membership: a datagram from {} could not be handled: {}", from->to_string(), e.what()));
                }
            }
        }
    }

    // The probe of the round that ends: unacked, its target is suspected.
    void finish_probe(clock::time_point now) {
        if (!probe_) return;
        if (!probe_->acked && view_.suspect(probe_->target.at.id, now)) {
            counters_.suspicions.fetch_add(1, std::memory_order_relaxed);
            changed();
        }
        probe_.reset();
    }

    void start_probe(clock::time_point now) {
        auto target = view_.next_probe();
        if (!target) return;
        probe_ = probe{*target, next_seq(), now + view_.options().probe_timeout, false, false};
        send(target->at, message(protocol::gossip_kind::ping, probe_->seq, news()));
        counters_.probes.fetch_add(1, std::memory_order_relaxed);
    }

    void sync_now() {
        auto m = message(protocol::gossip_kind::sync, 0, view_.members());
        if (!joined()) {
            for (const auto& s : seeds_) send_to(s, m);
            // A node alone in its file (or every seed down) is a cluster of one.
            if (seeds_.empty()) joined_.store(true, std::memory_order_release);
            return;
        }
        if (auto p = view_.sync_partner()) send(p->at, m);
    }

    void receive(const net::endpoint& from, std::string_view bytes) {
        counters_.datagrams_in.fetch_add(1, std::memory_order_relaxed);
        protocol::gossip_refusal why{};
        auto m = protocol::decode_gossip(bytes, key_.get(), &why);
        if (!m || m->cluster != cluster_) {
            counters_.refused.fetch_add(1, std::memory_order_relaxed);
            const auto now = clock::now();
            if (now - last_refusal_log_ > std::chrono::seconds(1)) {
                last_refusal_log_ = now;
                log_.warning(fmt::format("membership: refused a datagram from {}: {}", from.to_string(),
                                 m ? std::string_view("another cluster's") : protocol::to_string(why)));
            }
            return;
        }
        std::lock_guard lock(mutex_);
        const auto now = clock::now();
        bool change = false;
        for (auto& r : m->records) change = view_.apply(std::move(r), now) || change;
        switch (m->kind) {
            case protocol::gossip_kind::ping:
                send_to(from, message(protocol::gossip_kind::ack, m->seq, news()));
                break;
            case protocol::gossip_kind::ack:
                if (probe_ && probe_->seq == m->seq) probe_->acked = true;
                if (auto it = relays_.find(m->seq); it != relays_.end()) {
                    send_to(it->second.to, message(protocol::gossip_kind::ack, it->second.seq, news()));
                    relays_.erase(it);
                }
                break;
            case protocol::gossip_kind::ping_req: {
                const auto seq = next_seq();
                relays_[seq] = relay{from, m->seq, now + view_.options().probe_interval};
                send(m->target, message(protocol::gossip_kind::ping, seq, news()));
                break;
            }
            case protocol::gossip_kind::gossip: break;
            case protocol::gossip_kind::sync:
                send_to(from, message(protocol::gossip_kind::sync_reply, 0, view_.members()));
                [[fallthrough]];
            case protocol::gossip_kind::sync_reply:
                if (!joined()) {
                    joined_.store(true, std::memory_order_release);
                    log_(fmt::format("membership: joined through node {} ({} members known)", m->from,
                                     view_.members().size()));
                }
                break;
        }
        if (change) changed();
    }

    void changed() { on_change_(view_); }

    [[nodiscard]] protocol::gossip_message message(protocol::gossip_kind kind, std::uint64_t seq, std::vector<member> records) const {
        protocol::gossip_message m;
        m.kind = kind;
        m.seq = seq;
        m.from = self_id();
        m.cluster = cluster_;
        m.records = std::move(records);
        return m;
    }

    // News for one message: as many records as fit a datagram that no network fragments.
    std::vector<member> news() {
        auto all = view_.news(32);
        std::vector<member> out;
        std::size_t bytes = 64;
        for (auto& m : all) {
            bytes += protocol::wire_size(m);
            if (bytes > 1200) break;
            out.push_back(std::move(m));
        }
        return out;
    }

    void send(const node& to, const protocol::gossip_message& m) {
        auto it = addresses_.find(to.id);
        if (it == addresses_.end() || it->second.first != fmt::format("{}:{}", to.host, to.port)) {
            try {
                auto at = net::endpoint::resolve(to.host, to.port);
                it = addresses_.insert_or_assign(to.id, std::pair{fmt::format("{}:{}", to.host, to.port), at}).first;
            } catch (const std::exception&) {
                return;  // a name that does not resolve now: as a lost datagram
            }
        }
        send_to(it->second.second, m);
    }
    void send_to(const net::endpoint& to, const protocol::gossip_message& m) {
        if (socket_->send_to(to, protocol::encode(m, key_.get())))
            counters_.datagrams_out.fetch_add(1, std::memory_order_relaxed);
    }

    std::uint64_t next_seq() { return std::uniform_int_distribution<std::uint64_t>()(rng_); }

    mutable std::mutex mutex_;  // view_, probe_, relays_, addresses_, rng_
    membership view_;
    std::vector<net::endpoint> seeds_;
    std::uint64_t cluster_;
    std::shared_ptr<const protocol::cluster_key> key_;
    change_fn on_change_;
    log_fn log_;
    std::optional<net::udp_socket> socket_;
    std::thread thread_;
    std::atomic<bool> stopping_{true};
    std::atomic<bool> joined_{false};
    std::optional<probe> probe_;
    std::map<std::uint64_t, relay> relays_;
    std::map<node_id, std::pair<std::string, net::endpoint>> addresses_;
    std::mt19937_64 rng_;
    clock::time_point last_refusal_log_{};
    counters counters_;
};

}  // namespace dhtkit
