#pragma once
// The key service: the index requests a peer answers (put, get, del on keys; register,
// unregister, search on the file registry) and the copies of its writes. The table logic is
// index_service's; this adds where the copies go (the cluster map's holders of the key's slot)
// and when the client hears back (the replication policy's acknowledgement rule).
//
// A write is applied here, its record goes to the other holders through the replicator, and its
// reply is held in the connection until every copy was applied or found unreachable; then the
// policy says whether it counts as acknowledged (ok) or not (unavailable). No thread waits for it.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <limits>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "dhtkit/cluster/cluster_map.hpp"
#include "dhtkit/cluster/replication.hpp"
#include "dhtkit/cluster/replicator.hpp"
#include "dhtkit/peer/connection.hpp"
#include "dhtkit/peer/index_service.hpp"
#include "dhtkit/peer/reply.hpp"
#include "dhtkit/peer/settings.hpp"
#include "dhtkit/protocol/codec.hpp"

namespace dhtkit {

template <table Table, replication_policy Replication>
class key_service {
public:
    using log_fn = std::function<void(const std::string&)>;

    key_service(Table& keys, Table& files, node_id self, const limits_settings& lim, std::chrono::milliseconds max_skew,
                const cluster_view& view, const Replication& policy, replicator& copies, log_fn log)
        : index_(keys, files, self, lim.max_value_bytes, max_skew), self_(self), view_(view), policy_(policy),
          copies_(copies), log_(std::move(log)) {}

    [[nodiscard]] static bool handles(protocol::opcode op) noexcept {
        return index_service<Table>::handles(op) || op == protocol::opcode::replicate;
    }

    // Answers one request on `c`: the reply goes to c.out, or is held until its copies are done.
    void handle(const protocol::frame_view& f, connection& c) {
        protocol::header reply{f.h.op, 0, protocol::status::ok, f.h.request_id, 0, 0};
        if (f.h.op == protocol::opcode::replicate) {
            const auto ahead = index_.refused_ahead();
            if (!index_.apply(f.key, f.value)) {
                reply.code = protocol::status::bad_request;
                if (index_.refused_ahead() != ahead) note_refused(f.key, c);
            }
            protocol::append_frame(c.out, reply, {}, {});
            return;
        }
        const auto& map = view_.current();
        const slot_t slot = key_slot(f.key);
        if (!map.holds(self_, slot)) {
            auto h = map.holders(slot);
            reply.code = protocol::status::refused;
            protocol::append_frame(c.out, reply, {},
                                   h.empty() ? fmt::format("slot {} has no holder in map epoch {}", slot, map.epoch())
                                             : fmt::format("slot {} is held by peer {}, not by peer {} (map epoch {})",
                                                           slot, h.front(), self_, map.epoch()));
            return;
        }
        if (!index_service<Table>::is_write(f.h.op)) {
            index_.handle(f, c.out);
            return;
        }
        thread_local std::string record;  // sent below: the replicator copies it into its outbox
        const auto& targets = other_holders(map, f.key);
        if (targets.empty()) {  // the only holder: nothing to wait for
            index_.handle(f, c.out, &record);
            return;
        }
        const auto provisional_at = c.out.size();
        if (!index_.handle(f, c.out, &record)) return;  // nothing changed: answered as it is
        auto w = std::make_shared<write_wait>();
        w->conn = c.shared_from_this();
        w->policy = &policy_;
        w->header = reply;
        w->holders = targets.size() + 1;
        // Counted before any is sent: a copy may be answered before send() returns.
        w->left.store(targets.size(), std::memory_order_relaxed);
        c.hold(w, c.out.size() - provisional_at);
        const auto table = *protocol::record_table(record);
        for (const node* target : targets) copies_.send(*target, table, f.key, record, [w](bool ok) { w->done(ok); });
    }

    // A write made here, off the network (this peer's own registration of a file): applies it,
    // copies it, and waits for the copies. Not for an event loop.
    reply write_here(protocol::opcode op, std::string_view key, std::string_view value) {
        protocol::frame_view f{{op, 0, protocol::status::ok, 0, 0, 0}, key, value};
        std::string frame, record;
        if (index_.handle(f, frame, &record)) copy_and_wait(view_.current(), key, record);
        return reply_from_frame(frame);
    }

    [[nodiscard]] index_service<Table>& index() noexcept { return index_; }
    [[nodiscard]] const index_service<Table>& index() const noexcept { return index_; }

private:
    // One write's copies: the last to finish asks the policy, and replaces the provisional reply
    // (the write's own answer, already in the output) only when the write does not count.
    struct write_wait : held_reply {
        connection_ptr conn;
        const Replication* policy = nullptr;
        protocol::header header;
        std::size_t holders = 0;
        std::atomic<std::size_t> left{0};
        std::atomic<std::size_t> applied{1};  // this node

        void done(bool ok) {
            if (ok) applied.fetch_add(1, std::memory_order_relaxed);
            if (left.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
            const auto n = applied.load(std::memory_order_relaxed);
            if (!policy->acknowledged(n, holders)) {
                header.code = protocol::status::unavailable;
                protocol::append_frame(frame, header, {}, fmt::format("only {} of the {} holders applied the write", n, holders));
            }
            auto c = std::move(conn);  // the connection may go once released
            c->release();
        }
    };

    // A record stamped too far ahead was refused: said at most once a second, naming the sender.
    void note_refused(std::string_view key, const connection& c) {
        const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
        auto last = last_refusal_log_.load(std::memory_order_relaxed);
        if (now - last < std::chrono::nanoseconds(std::chrono::seconds(1)).count() ||
            !last_refusal_log_.compare_exchange_strong(last, now, std::memory_order_relaxed))
            return;
        log_(fmt::format("refused a record of '{}' from {}: stamped more than the allowed clock skew ahead "
                         "({} refused so far)",
                         key.substr(0, 64), c.stream.remote().to_string(), index_.refused_ahead()));
    }

    // The nodes besides this one that hold `key` (nodes of a map outlive its readers), in a
    // per-thread vector that is valid until this thread's next call.
    [[nodiscard]] const std::vector<const node*>& other_holders(const cluster_map& map, std::string_view key) const {
        thread_local std::vector<const node*> out;
        out.clear();
        for (auto id : map.holders_of_key(key))
            if (id != self_)
                if (const node* n = map.find(id)) out.push_back(n);
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
        w->left = targets.size();
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
    std::atomic<std::int64_t> last_refusal_log_{std::numeric_limits<std::int64_t>::min() / 2};
};

}  // namespace dhtkit
