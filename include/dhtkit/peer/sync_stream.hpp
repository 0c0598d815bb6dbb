#pragma once
// The answering side of a catch-up (cluster/catch_up.hpp): the stream of records a node sends
// another that asked for some of its slots. An output_source (peer/connection.hpp): a shard of
// the table at a time, added to the connection's output whenever the socket has room, so a large
// store never sits whole in memory and no loop waits for a slow asker.

#include <bitset>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dhtkit/cluster/cluster_map.hpp"
#include "dhtkit/cluster/slot_agreements.hpp"
#include "dhtkit/cluster/slot_readiness.hpp"
#include "dhtkit/cluster/slots.hpp"
#include "dhtkit/peer/connection.hpp"
#include "dhtkit/peer/replica_tables.hpp"
#include "dhtkit/protocol/codec.hpp"
#include "dhtkit/protocol/frame.hpp"
#include "dhtkit/store/versioned.hpp"

namespace dhtkit {

// One sync answer: the wanted records, one shard of each table per pump, then the end frame.
// When the asker sent its slots' digests, this node's digests of those slots come first (a
// few shards per pump, so that no loop is held for the whole table), and the slots that agree
// are left out.
template <string_table Table>
class sync_stream : public output_source {
public:
    sync_stream(const replica_tables<Table>& index, protocol::header h, const slot_readiness& ready,
            slot_agreements& agreements, node_id asker)
        : index_(index), header_(h), ready_(ready), agreements_(agreements), asker_(asker) {
        header_.flags = protocol::flag_more;
    }
    // Asks for the slots of `ranges` (pairs of first and last), with the asker's digest of each
    // in order when `digests` is not empty. Returns the slots asked for.
    template <class Ranges>
    const std::bitset<slot_count>& ask_for(const Ranges& ranges, const std::vector<std::uint64_t>& digests) {
        std::size_t at = 0;
        for (auto [first, last] : ranges)
            for (std::size_t s = first; s <= last; ++s, ++at) {
                if (s >= slot_count) continue;
                wanted.set(s);
                if (digests.empty()) continue;
                compare.set(s);
                theirs[s] = digests[at];
            }
        asked = wanted;
        return asked;
    }

    std::bitset<slot_count> wanted;   // the slots whose records go
    std::bitset<slot_count> asked;    // the slots asked for (for the end frame)
    std::bitset<slot_count> compare;  // the slots the asker sent a digest of
    std::vector<std::uint64_t> theirs = std::vector<std::uint64_t>(slot_count, 0);

    progress pump(net::tcp_stream&, std::string& out) override {
        constexpr std::size_t batch_bytes = 256 * 1024;
        if (compare.any()) {
            if (ours_.empty()) {
                ours_.assign(slot_count, 0);
                compared_at_ = stamp_now();
            }
            for (int n = 0; n < 32 && digest_shard_ < 2 * Table::shard_count; ++n, ++digest_shard_) {
                auto t = digest_shard_ < Table::shard_count ? protocol::table_id::keys : protocol::table_id::files;
                index_.add_digests_in(t, digest_shard_ % Table::shard_count, compare, ours_);
            }
            if (digest_shard_ < 2 * Table::shard_count) return progress::more;
            std::bitset<slot_count> same;
            for (std::size_t s = 0; s < slot_count; ++s)
                if (compare.test(s) && ours_[s] == theirs[s]) same.set(s);
            wanted &= ~same;
            agreements_.agreed(asker_, same, compared_at_);
            compare.reset();
            std::vector<std::uint64_t>().swap(ours_);
        }
        while (out.size() < batch_bytes) {
            if (shard_ == 2 * Table::shard_count) {
                // The end says whether this node was serving every slot asked for: an asker
                // that hears it from a node still catching up knows the stream may lack what
                // that node missed.
                bool serving = true;
                for (std::size_t s = 0; s < slot_count && serving; ++s)
                    serving = !asked.test(s) || ready_.ready(static_cast<slot_t>(s));
                header_.flags = 0;
                protocol::append_frame(out, header_, {}, serving ? std::string_view("\1", 1) : std::string_view("\0", 1));
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
    const replica_tables<Table>& index_;
    protocol::header header_;
    const slot_readiness& ready_;
    slot_agreements& agreements_;
    node_id asker_;
    std::uint64_t compared_at_ = 0;  // when this node began its digests
    std::size_t shard_ = 0;         // over both tables' shards
    std::size_t digest_shard_ = 0;  // the same, for the digests
    std::vector<std::uint64_t> ours_;
};

}  // namespace dhtkit
