#pragma once
// The key service: the index requests a peer answers (put, get, del on keys; register,
// unregister, search on the file registry) and the copies of its writes. The table logic is
// index_service's; this adds where the copies go (the cluster map's holders of the key's slot)
// and when the client hears back (the replication policy's acknowledgement rule).
//
// A write is applied here, its record goes to the other holders through the replicator, and its
// reply is held in the connection until every copy was applied or found unreachable; then the
// policy says whether it counts as acknowledged (ok) or not (unavailable). No thread waits for it.
//
// Whether a read may be answered from this node's copy, or needs a quorum of holders, and
// whether a write may be taken, is for the lease rules (cluster/lease_rules.hpp).

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "dhtkit/cluster/cluster_map.hpp"
#include "dhtkit/cluster/hand_offs.hpp"
#include "dhtkit/cluster/lease_rules.hpp"
#include "dhtkit/cluster/leases.hpp"
#include "dhtkit/cluster/replication.hpp"
#include "dhtkit/cluster/replicator.hpp"
#include "dhtkit/log/logger.hpp"
#include "dhtkit/peer/connection.hpp"
#include "dhtkit/peer/index_service.hpp"
#include "dhtkit/peer/log_limiter.hpp"
#include "dhtkit/peer/reply.hpp"
#include "dhtkit/peer/settings.hpp"
#include "dhtkit/protocol/codec.hpp"
#include "dhtkit/store/storage.hpp"

namespace dhtkit {

template <string_table Table, replication_policy Replication, storage_policy Storage = any_storage>
class key_service {
public:
    using log_fn = logger;

    // `held`: this node's read leases; null for a node that answers every read from its own copy.
    // `min_copies`: a write counts only once at least this many holders applied it (at most all of
    // the slot's holders), whatever the policy's rule: [replication] min_copies.
    key_service(Table& keys, Table& files, node_id self, const limits_settings& lim, std::chrono::milliseconds max_skew,
                const cluster_view& view, const Replication& policy, replicator& copies, log_fn log,
                const lease_holdings* held = nullptr, Storage* storage = nullptr, const hand_offs* handing = nullptr,
                std::size_t min_copies = 1)
        : index_(keys, files, self, lim.max_value_bytes, max_skew), self_(self), view_(view), policy_(policy),
          copies_(copies), log_(std::move(log)), rules_(self, policy, held, min_copies),
          storage_(storage && storage->keeps() ? storage : nullptr), handing_(handing) {}

    [[nodiscard]] static bool handles(protocol::opcode op) noexcept {
        return index_service<Table>::handles(op) || op == protocol::opcode::replicate;
    }

    // Answers one request on `c`: its outcome is recorded there, or held until its copies are done.
    // `unversioned`: a RESP write, whose version is its arrival here (see quorum_short).
    void handle(const protocol::frame_view& f, connection& c, bool unversioned = false) {
        protocol::header reply{f.h.op, 0, protocol::status::ok, f.h.request_id, 0, 0};
        if (f.h.op == protocol::opcode::replicate) {
            const auto ahead = index_.refused_ahead();
            if (!index_.apply(f.key, f.value)) {
                reply.code = protocol::status::bad_request;
                if (index_.refused_ahead() != ahead) note_refused(f.key, c);
            } else if (storage_) {
                // Applied: acknowledged to its sender once it is in this node's log.
                auto held = c.hold();
                storage_->append(f.key, f.value, [held, conn = c.shared_from_this(), reply](bool kept) mutable {
                    if (!kept) reply.code = protocol::status::internal_error;
                    held->answer.emplace(reply, kept ? "" : "this node could not write its log");
                    conn->release();
                });
                return;
            }
            c.answer(reply, {});
            return;
        }
        if (f.key.empty()) {  // on every node alike, before its slot is asked about
            reply.code = protocol::status::bad_request;
            c.answer(reply, "the key is empty");
            return;
        }
        const auto& map = view_.current();
        const slot_t slot = key_slot(f.key);
        if (!(f.h.flags & protocol::flag_own_copy))
            if (auto why = rules_.members_short(map)) {
                reply.code = protocol::status::unavailable;
                c.answer(reply, *why);
                return;
            }
        if (!map.holds(self_, slot)) {
            auto h = map.holders(slot);
            // A live map moves slots: the client's map is older than this node's, and learns the
            // new one here (`map`). A static one never does: the client follows another file.
            reply.code = map.live() ? protocol::status::moved : protocol::status::refused;
            c.answer(reply, h.empty() ? fmt::format("slot {} has no holder in map epoch {}", slot, map.epoch())
                                             : fmt::format("slot {} is held by peer {}, not by peer {} (map epoch {})",
                                                           slot, h.front(), self_, map.epoch()));
            return;
        }
        if (!index_service<Table>::is_write(f.h.op)) {
            const auto mark = c.answered();
            index_.handle(f, c.answer());  // read first, then ask whether the leases held meanwhile
            if (f.h.flags & protocol::flag_own_copy) return;
            const auto backing = rules_.vouch(map, slot);
            if (backing.own_copy) return;
            c.take_back(mark);
            if (backing.quorum > 1) return read_quorum(f, c, map, backing.quorum);
            reply.code = protocol::status::unavailable;
            c.answer(reply, fmt::format("peer {} may have missed writes (its read lease from peer {} lapsed): "
                                               "ask the next holder",
                                               self_, backing.lapsed));
            return;
        }
        const auto& targets = other_holders(map, f.key);
        if (auto short_of = rules_.quorum_short(map, slot, targets.size() + 1, unversioned)) {
            reply.code = protocol::status::unavailable;
            c.answer(reply, *short_of);
            return;
        }
        thread_local std::string record;  // sent below: the replicator copies it into its outbox
        if (targets.empty() && !storage_) {  // the only holder, kept in memory: nothing to wait for
            index_.handle(f, c.answer(), &record);
            return;
        }
        if (!index_.handle(f, c.answer(), &record)) return;  // nothing changed: answered as it is
        auto w = std::make_shared<write_wait>();
        w->conn = c.shared_from_this();
        w->service = this;
        w->slot = slot;
        w->policy = &policy_;
        w->header = reply;
        w->holders = targets.size() + 1;
        // Counted before any is sent: a copy may be answered before send() returns. With a log,
        // this node's own copy counts once it is in the log, like another holder's.
        w->left.store(targets.size() + (storage_ ? 1 : 0), std::memory_order_relaxed);
        w->applied.store(storage_ ? 0 : 1, std::memory_order_relaxed);
        c.hold(w, true);
        const auto table = *protocol::record_table(record);
        if (storage_) storage_->append(f.key, record, [w](bool ok) { w->done(ok); });
        for (const node* target : targets) copies_.send(*target, table, f.key, record, [w](bool ok) { w->done(ok); });
    }

    // A write made here, off the network (this peer's own registration of a file): applies it,
    // copies it, and waits for the copies. Not for an event loop.
    reply write_here(protocol::opcode op, std::string_view key, std::string_view value) {
        protocol::frame_view f{{op, 0, protocol::status::ok, 0, 0, 0}, key, value};
        outcome answer;
        std::string record;
        if (index_.handle(f, answer, &record)) copy_and_wait(view_.current(), key, record);
        return reply_from(answer);
    }

    // Under "majority" with a live map: requests wait (answer unavailable) until `t`, when every
    // lease this node granted members that a new map declares dead has run out.
    void act_after(std::chrono::steady_clock::time_point t) noexcept { rules_.act_after(t); }

    // Writes acknowledged while this node's copy was the only one applied (a floor of one copy,
    // min_copies = 1, and every other holder unreachable): one crash of this node loses them until
    // the others catch up from it.
    [[nodiscard]] std::uint64_t single_copy_writes() const noexcept { return single_copy_.load(std::memory_order_relaxed); }

    [[nodiscard]] index_service<Table>& index() noexcept { return index_; }
    [[nodiscard]] const index_service<Table>& index() const noexcept { return index_; }

private:
    // A read that needs a quorum: this node's record and those of the other holders, the newest
    // answering. The reply is held until `need` holders answered, or all did and too few could.
    struct read_wait : held_reply {
        connection_ptr conn;
        protocol::frame_view request;  // key and value point into `key`
        std::string key;
        std::mutex mutex;
        std::string newest;           // guarded by mutex: a record (table byte, entry), or empty
        std::size_t answered = 1;     // guarded by mutex: this node
        std::size_t left = 0;         // guarded by mutex
        std::size_t need = 0;
        std::size_t holders = 0;
        bool released = false;        // guarded by mutex

        void take(bool ok, std::string_view record) {
            std::unique_lock lock(mutex);
            if (ok) {
                ++answered;
                if (newer(record, newest)) newest.assign(record);
            }
            --left;
            if (released || (answered < need && left > 0)) return;
            released = true;
            if (answered >= need) {
                std::optional<versioned_view> v;
                if (newest.size() > 1) v = read_versioned(std::string_view(newest).substr(1));
                answer_read(request, v, answer.emplace());
            } else {
                protocol::header h{request.h.op, 0, protocol::status::unavailable, request.h.request_id, 0, 0};
                answer.emplace(h, fmt::format("only {} of the {} holders answered; a read needs {}", answered,
                                                   holders, need));
            }
            lock.unlock();
            auto c = std::move(conn);
            c->release();
        }

        static bool newer(std::string_view a, std::string_view b) {
            if (a.size() <= 1) return false;
            if (b.size() <= 1) return true;
            auto va = read_versioned(a.substr(1)), vb = read_versioned(b.substr(1));
            return va && (!vb || va->version > vb->version);
        }
    };

    void read_quorum(const protocol::frame_view& f, connection& c, const cluster_map& map, std::size_t need) {
        auto w = std::make_shared<read_wait>();
        w->conn = c.shared_from_this();
        w->key.assign(f.key);
        w->request = {f.h, w->key, {}};
        w->need = need;
        if (auto mine = index_.record_of(index_service<Table>::table_of(f.h.op), f.key)) w->newest = std::move(*mine);
        const auto targets = other_holders(map, f.key);  // a copy: an answer may come before the loop ends
        w->holders = targets.size() + 1;
        w->left = targets.size() + 1;  // one held back until every ask is out
        c.hold(w, false);
        for (const node* target : targets)
            copies_.ask(*target, f.h.op, f.key, [w](bool ok, std::string_view rec) { w->take(ok, rec); });
        w->take(false, {});  // the hold-back above
    }

    // One write's copies: the last to finish asks the policy, and replaces the provisional reply
    // (the write's own answer, already in the output) only when the write does not count.
    struct write_wait : held_reply {
        connection_ptr conn;
        const key_service* service = nullptr;
        slot_t slot = 0;
        const Replication* policy = nullptr;
        protocol::header header;
        std::size_t holders = 0;
        std::atomic<std::size_t> left{0};
        std::atomic<std::size_t> applied{1};  // this node

        void done(bool ok) {
            if (ok) applied.fetch_add(1, std::memory_order_relaxed);
            if (left.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
            const auto n = applied.load(std::memory_order_relaxed);
            if (!policy->acknowledged(n, holders) || n < service->rules_.copy_floor(holders)) {
                header.code = protocol::status::unavailable;
                answer.emplace(header, fmt::format("only {} of the {} holders applied the write", n, holders));
            } else if (n < holders) {
                // Asked again now, not only when the write came: a node that was paused while
                // its copies were under way must not count them as done without holders it
                // has not heard from since.
                if (auto why = service->rules_.quorum_short(service->view_.current(), slot, holders)) {
                    header.code = protocol::status::unavailable;
                    answer.emplace(header, *why);
                } else if (n == 1) {
                    service->single_copy_.fetch_add(1, std::memory_order_relaxed);
                }
            }
            auto c = std::move(conn);  // the connection may go once released
            c->release();
        }
    };

    // A record stamped too far ahead was refused: said at most once a second, naming the sender.
    void note_refused(std::string_view key, const connection& c) {
        if (!refusal_log_.allow()) return;
        log_.warning(fmt::format("refused a record of '{}' from {}: stamped more than the allowed clock skew ahead "
                         "({} refused so far)",
                         key.substr(0, 64), c.stream.remote().to_string(), index_.refused_ahead()));
    }

    // The nodes besides this one that hold `key` (nodes of a map outlive its readers), in a
    // per-thread vector that is valid until this thread's next call; and those taking its slot
    // over (cluster/hand_offs.hpp).
    [[nodiscard]] const std::vector<const node*>& other_holders(const cluster_map& map, std::string_view key) const {
        thread_local std::vector<const node*> out;
        out.clear();
        for (auto id : map.holders_of_key(key))
            if (id != self_)
                if (const node* n = map.find(id)) out.push_back(n);
        if (handing_)
            handing_->for_slot(key_slot(key), [&](node_id id) {
                if (id == self_ || std::any_of(out.begin(), out.end(), [&](const node* n) { return n->id == id; })) return;
                if (const node* n = map.find(id)) out.push_back(n);
            });
        return out;
    }

    void copy_and_wait(const cluster_map& map, std::string_view key, const std::string& record) {
        struct waiter {
            std::mutex mutex;
            std::condition_variable done;
            std::size_t left = 0;  // guarded by mutex
        };
        auto w = std::make_shared<waiter>();
        const auto targets = other_holders(map, key);  // a copy: send() may run another write's callback
        w->left = targets.size() + (storage_ ? 1 : 0);
        auto one_done = [w](bool) {
            std::lock_guard lock(w->mutex);
            if (--w->left == 0) w->done.notify_all();
        };
        if (storage_) storage_->append(key, record, one_done);
        for (const node* target : targets)
            copies_.send(*target, *protocol::record_table(record), key, record, [w](bool) {
                std::lock_guard lock(w->mutex);
                if (--w->left == 0) w->done.notify_all();
            });
        std::unique_lock lock(w->mutex);
        w->done.wait(lock, [&] { return w->left == 0; });  // bounded: the replicator answers every copy
    }

    index_service<Table> index_;
    node_id self_;
    const cluster_view& view_;
    const Replication& policy_;
    replicator& copies_;
    log_fn log_;
    lease_rules<Replication> rules_;
    Storage* storage_;  // null when nothing is kept beyond the table
    const hand_offs* handing_;  // live membership: nodes taking slots over; null otherwise
    mutable std::atomic<std::uint64_t> single_copy_{0};
    log_limiter refusal_log_;
};

}  // namespace dhtkit
