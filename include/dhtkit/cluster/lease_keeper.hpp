#pragma once
// The lease keeper: renews this node's read leases (cluster/leases.hpp) from every node it shares
// slots with, one thread and one connection per such node, every renew_every.
//
// When a lease is not renewed in time — this process was paused, or the other node is dead, hung
// or cut off — the reads of the slots shared with that node are refused until this node has
// caught up on those slots from their holders (`catch_up`, which blocks this thread until done):
// whatever the grantor acknowledged without this node while the lease was out is then here,
// whether the grantor answers again, was restarted meanwhile, or cannot be reached. A grantor
// that answers is asked again at once (the lease counts from a grant made after the catch-up);
// one that cannot be reached is excused until it grants again, each failed request renewing the
// excuse for excuse_term; an excuse that ran out (this node was paused or starved that long: the
// grantor may have come back, acknowledged writes without it, and gone again) is made up for by a
// catch-up before it is given again. A grantor that says this node is
// "behind" (it acknowledged writes without it) gets the same. A grant counts only after a catch-up
// in which the grantor's own stream was complete: another holder's snapshot may predate writes
// the grantor acknowledged without this node, and the grantor forgets "behind" as soon as it is
// asked for its stream, not when the stream has arrived. While an excused grantor stays out
// of reach, what it could still acknowledge without this node is a partition's business (see
// docs/replication.md).
//
// Under "majority" with a live map each request names the placement of this node's map; a grantor
// whose map places slots otherwise (or that took a new map a moment ago) answers `moved`: no
// lease, no excuse and no catch-up, and it is asked again at the next round, or at once when this
// node's map changes (renew_now).

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#include "dhtkit/cluster/cluster_map.hpp"
#include "dhtkit/cluster/handshake.hpp"
#include "dhtkit/cluster/leases.hpp"
#include "dhtkit/protocol/messages.hpp"
#include "dhtkit/protocol/rpc.hpp"

namespace dhtkit {

class lease_keeper {
public:
    using clock = std::chrono::steady_clock;
    // Catches up on the slots this node shares with node `id`, from their holders (`id` too when
    // `ask_it`); blocks. Calls `waiting` once those slots answer `unavailable`, before any stream.
    // True when `id`'s own stream was complete (or it was not asked).
    using catch_up_fn = std::function<bool(node_id id, bool ask_it, const std::function<void()>& waiting)>;
    // Told after each grant: node `id` answers (the replicator stops skipping it).
    using grant_fn = std::function<void(node_id)>;
    // The placement digest of the map this node follows now, sent with each request (zero: none
    // in particular; cluster/lease_rules.hpp, lease_map).
    using map_fn = std::function<std::uint64_t()>;

    lease_keeper(node_id self, lease_holdings& held, protocol::limits lim, protocol::hello_request hello,
                 lease_options opt, catch_up_fn catch_up, grant_fn on_grant = {}, map_fn map = {})
        : self_(self), held_(held), limits_(lim), hello_(std::move(hello)), options_(opt),
          catch_up_(std::move(catch_up)), on_grant_(std::move(on_grant)), map_(std::move(map)) {}
    lease_keeper(const lease_keeper&) = delete;
    lease_keeper& operator=(const lease_keeper&) = delete;
    ~lease_keeper() { stop(); }

    // Starts renewing from each of `grantors` (the other holders of this node's slots).
    void start(const std::vector<node>& grantors) {
        std::lock_guard lock(mutex_);
        if (stopping_ || !threads_.empty()) return;
        for (const auto& n : grantors) {
            renewing_.push_back(n.id);
            threads_.emplace_back([this, n] { run(n); });
        }
    }

    // Starts renewing from `grantor` too, unless it does already (live membership: a member that
    // joined shares slots with this node). Its leases must have room in `held` (add) first.
    void add(const node& grantor) {
        std::lock_guard lock(mutex_);
        if (stopping_ || grantor.id == self_ ||
            std::find(renewing_.begin(), renewing_.end(), grantor.id) != renewing_.end())
            return;
        renewing_.push_back(grantor.id);
        ++first_answers_;  // a node that serves already does not wait for this one's first answer
        threads_.emplace_back([this, grantor] { run(grantor); });
    }

    // Waits (up to `limit`) until every grantor was asked once and its answer taken in — a grant,
    // or a catch-up after no answer — so that a node that says it serves answers reads.
    void wait_first_answers(std::chrono::milliseconds limit) {
        std::unique_lock lock(mutex_);
        wake_.wait_for(lock, limit, [&] { return stopping_ || first_answers_ >= threads_.size(); });
    }

    // This node follows a new map: every grantor is asked at once (leases count only under the
    // map they were asked under), not at its next round.
    void renew_now() {
        {
            std::lock_guard lock(mutex_);
            ++renewals_;
        }
        wake_.notify_all();
    }

    void stop() {
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        wake_.notify_all();
        for (auto& t : threads_)
            if (t.joinable()) t.join();
        threads_.clear();
    }

private:
    // gone: refused, nothing listens there; other_map: the grantor places slots otherwise, or
    // took a new map a moment ago (it answers `moved` to both).
    enum class answer { granted, behind, other_map, failed, gone };

    void run(const node& from) {
        protocol::rpc_stream rpc;
        std::uint64_t next_id = 1;
        bool caught_up = true;  // since the lease lapsed (at first: the node's catch-up at start): the next grant counts
        bool first = true, asked_again = false;
        bool excusing = false;  // this thread excused `from`, and no answer came since
        std::uint64_t renewals_seen = 0;
        for (;;) {
            {
                std::lock_guard lock(mutex_);
                renewals_seen = renewals_;
            }
            const auto asked_at = clock::now();
            if (excusing && held_.lapsed(from.id, asked_at)) {  // the excuse ran out
                caught_up = false;
                excusing = false;
            }
            const bool lapsed = !caught_up && held_.lapsed(from.id, asked_at);
            std::chrono::milliseconds term{};
            const auto map = map_ ? map_() : 0;
            const auto got = ask(rpc, from, next_id, map, term);
            auto next_round = asked_at + options_.renew_every;
            switch (got) {
                case answer::granted:
                    if (lapsed) {
                        // The grant is older than the catch-up: ask again now. Unless the
                        // grantor's stream broke off: then the next round catches up again.
                        caught_up = catch_up_(from.id, true, [] {});
                        if (caught_up) continue;
                        break;
                    }
                    if (on_grant_) on_grant_(from.id);  // before the lease counts: it may act on a lapse
                    held_.renewed(from.id, asked_at, term, map);
                    caught_up = false;
                    excusing = false;
                    break;
                case answer::other_map:
                    // It answers, so it is not excused; and it is not behind: what it acknowledges
                    // under its map is caught up as any lapse is, at the first grant after one.
                    // The maps agree within a gossip round or two; renew_now comes with ours.
                    excusing = false;
                    break;
                case answer::behind:
                    held_.revoke(from.id);
                    excusing = false;
                    // Its stream clears "behind" there: the next ask is granted, and counts if
                    // that stream was complete.
                    caught_up = catch_up_(from.id, true, [] {});
                    if (first && !asked_again) {  // a node starting waits for its first grant
                        asked_again = true;
                        continue;
                    }
                    break;
                case answer::failed:
                case answer::gone: {
                    const auto why = got == answer::gone ? lease_holdings::absence::gone
                                                         : lease_holdings::absence::out_of_reach;
                    // Excused as soon as the shared slots wait for the catch-up (they answer
                    // nothing from this copy until it is done), so that writes go on meanwhile.
                    if (lapsed) {
                        catch_up_(from.id, false, [&] { held_.excuse(from.id, why, clock::time_point::max()); });
                        caught_up = true;
                    }
                    // Not while the lease still runs: if it lapses, the next round catches up first.
                    // Counted from the failed request: what this node knows is no newer.
                    if (caught_up && !held_.valid(from.id)) {
                        held_.excuse(from.id, why, asked_at + options_.excuse_term);
                        excusing = true;
                    }
                    // Ask again as the lease runs out, not up to a round later: between the two
                    // the shared slots take no write (the grantor is neither current nor excused).
                    if (held_.valid(from.id)) next_round = std::min(next_round, held_.valid_until(from.id));
                    break;
                }
            }
            std::unique_lock lock(mutex_);
            if (first) {
                first = false;
                ++first_answers_;
                wake_.notify_all();
            }
            if (wake_.wait_until(lock, next_round, [&] { return stopping_ || renewals_ != renewals_seen; }) && stopping_)
                return;
        }
    }

    answer ask(protocol::rpc_stream& rpc, const node& from, std::uint64_t& next_id, std::uint64_t map,
               std::chrono::milliseconds& term) {
        {
            std::lock_guard lock(mutex_);
            if (stopping_) return answer::failed;
        }
        try {
            if (!rpc.valid()) {
                rpc = protocol::rpc_stream::connect(from.host, from.port, limits_, options_.request_timeout);
                if (!say_hello(rpc, hello_, options_.request_timeout).agreed()) throw std::runtime_error("hello refused");
                next_id = 1;
            }
        } catch (const std::system_error& e) {
            // Refused: nothing listens there, so the process that could grant (or acknowledge) is gone.
            rpc.close();
            return e.code().value() == ECONNREFUSED ? answer::gone : answer::failed;
        } catch (const std::exception&) {
            rpc.close();
            return answer::failed;
        }
        const auto id = next_id++;
        protocol::frame_view f;
        if (rpc.send({protocol::opcode::lease, 0, protocol::status::ok, id, 0, 0}, {}, protocol::encode(protocol::lease_request{self_, map}),
                     options_.request_timeout) != protocol::rpc_status::ok ||
            rpc.receive(f, options_.request_timeout) != protocol::rpc_status::ok || f.h.request_id != id) {
            rpc.close();  // a late answer would be read as the next one's
            return answer::failed;
        }
        if (f.h.code == protocol::status::unavailable) return answer::behind;
        if (f.h.code == protocol::status::moved) return answer::other_map;
        auto ms = protocol::decode_u64(f.value);
        if (f.h.code != protocol::status::ok || !ms) return answer::failed;
        term = std::min(std::chrono::milliseconds(*ms), options_.term);  // never trust a longer one
        return answer::granted;
    }

    node_id self_;
    lease_holdings& held_;
    protocol::limits limits_;
    protocol::hello_request hello_;
    lease_options options_;
    catch_up_fn catch_up_;
    grant_fn on_grant_;
    map_fn map_;

    std::mutex mutex_;
    std::condition_variable wake_;
    bool stopping_ = false;  // guarded by mutex_
    std::size_t first_answers_ = 0;  // guarded by mutex_
    std::uint64_t renewals_ = 0;  // guarded by mutex_: renew_now calls
    std::vector<std::thread> threads_;
    std::vector<node_id> renewing_;  // guarded by mutex_: the grantors threads_ renew from
};

}  // namespace dhtkit
