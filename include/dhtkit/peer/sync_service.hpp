#pragma once
// The sync service: both sides of catch-up (cluster/catch_up.hpp). At start, this node asks the
// other holders of its slots for their records and applies them before it serves clients; while
// it serves, it answers other nodes' sync requests with a stream of the records of the slots they
// ask for. The stream is an output_source: a shard of the table at a time, added to the
// connection's output whenever the socket has room, so a large store never sits whole in memory
// and no loop waits for a slow asker.

#include <algorithm>
#include <atomic>
#include <bitset>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "dhtkit/cluster/catch_up.hpp"
#include "dhtkit/cluster/cluster_map.hpp"
#include "dhtkit/cluster/replicator.hpp"
#include "dhtkit/peer/connection.hpp"
#include "dhtkit/peer/index_service.hpp"
#include "dhtkit/protocol/messages.hpp"

namespace dhtkit {

template <table Table>
class sync_service {
public:
    using log_fn = std::function<void(const std::string&)>;

    sync_service(index_service<Table>& index, node_id self, const cluster_view& view, replicator& copies,
                 protocol::limits lim)
        : index_(index), self_(self), view_(view), copies_(copies), limits_(lim) {}

    // True once the catch-up is done: client requests are served from then on.
    [[nodiscard]] bool serving() const noexcept { return serving_.load(std::memory_order_acquire); }

    // Asks every other holder of this node's slots for their records and applies them, then
    // serves. Run by the peer at start, after it listens (so copies of new writes reach it).
    void catch_up_now(const log_fn& log) {
        const auto& m = view_.current();
        auto ranges = m.slots().ranges_held_by(self_);
        std::vector<node> from;  // every other holder of a slot held here
        m.slots().for_each_range([&](slot_range, std::span<const node_id> holders) {
            if (std::find(holders.begin(), holders.end(), self_) == holders.end()) return;
            for (auto id : holders)
                if (id != self_ && std::none_of(from.begin(), from.end(), [&](const node& n) { return n.id == id; }))
                    if (const node* n = m.find(id)) from.push_back(*n);
        });
        if (!from.empty()) {
            auto result = catch_up(self_, from, ranges, limits_,
                                   [&](std::string_view key, std::string_view record) { index_.apply(key, record); },
                                   std::chrono::milliseconds(250), std::chrono::seconds(5));
            // Atomics: stats are served while the catch-up runs.
            records_.store(result.records, std::memory_order_relaxed);
            peers_.store(result.peers_answered, std::memory_order_relaxed);
            std::string missing;
            for (const auto& why : result.unreachable) missing += fmt::format("; not from {}", why);
            log(fmt::format("caught up: {} records from {} peers{}", result.records, result.peers_answered, missing));
        }
        serving_.store(true, std::memory_order_release);
    }

    // Answers a sync request on `c`: the records stream after the reply's place; ends the batch.
    void handle(const protocol::frame_view& f, connection& c) {
        protocol::header reply{f.h.op, 0, protocol::status::ok, f.h.request_id, 0, 0};
        auto ask = protocol::decode_sync_request(f.value);
        if (!ask || ask->ranges.empty()) {
            reply.code = protocol::status::bad_request;
            protocol::append_frame(c.out, reply, {}, "a sync request is the asker's node id, then slot ranges");
            return;
        }
        // The asker is up again: copies go to it directly from now on, and what it missed before
        // now is in the stream below, which starts after this point.
        if (ask->asker != self_) copies_.peer_is_up(ask->asker);
        auto stream = std::make_unique<records>(index_, reply);
        for (auto [first, last] : ask->ranges)
            for (std::size_t s = first; s <= last && s < slot_count; ++s) stream->wanted.set(s);
        // Behind any reply still held, so that it starts only when they have gone.
        auto h = c.hold();
        h->then = std::move(stream);
        c.release();
    }

    [[nodiscard]] std::size_t caught_up_records() const noexcept { return records_.load(std::memory_order_relaxed); }
    [[nodiscard]] std::size_t caught_up_from() const noexcept { return peers_.load(std::memory_order_relaxed); }

private:
    // One sync answer: the wanted records, one shard of each table per pump, then the end frame.
    class records : public output_source {
    public:
        records(const index_service<Table>& index, protocol::header h) : index_(index), header_(h) {
            header_.flags = protocol::flag_more;
        }
        std::bitset<slot_count> wanted;

        progress pump(net::tcp_stream&, std::string& out) override {
            constexpr std::size_t batch_bytes = 256 * 1024;
            while (out.size() < batch_bytes) {
                if (shard_ == 2 * Table::shard_count) {
                    header_.flags = 0;
                    protocol::append_frame(out, header_, {}, {});
                    return progress::done;
                }
                auto t = shard_ < Table::shard_count ? protocol::table_id::keys : protocol::table_id::files;
                index_.for_each_record_in(t, shard_ % Table::shard_count, [&](std::string_view key, std::string_view rec) {
                    if (wanted.test(key_slot(key))) protocol::append_frame(out, header_, key, rec);
                });
                ++shard_;
            }
            return progress::more;
        }

    private:
        const index_service<Table>& index_;
        protocol::header header_;
        std::size_t shard_ = 0;  // over both tables' shards
    };

    index_service<Table>& index_;
    node_id self_;
    const cluster_view& view_;
    replicator& copies_;
    protocol::limits limits_;
    std::atomic<bool> serving_{false};
    std::atomic<std::size_t> records_{0};
    std::atomic<std::size_t> peers_{0};
};

}  // namespace dhtkit
