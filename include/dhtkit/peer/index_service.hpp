#pragma once
// The index server: the keys this peer holds (put, get, del) and the file registry
// (NAME -> holders). Pure request-to-reply logic over the shared tables, with no sockets, so the
// fuzzer and the unit tests drive it directly.
//
// Every entry is versioned (store/versioned.hpp). A write a client sent here is given a new
// version and stored; what it stored comes back as a replication record for the peer to copy to
// the key's other replicas, which apply it only if it is newer than what they have
// (peer/replica_tables.hpp: applying records, purging, digests). A deletion leaves a tombstone,
// so that an older copy arriving later cannot bring the value back.

#include <algorithm>
#include <atomic>
#include <bitset>
#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "dhtkit/cluster/slots.hpp"
#include "dhtkit/peer/read_answer.hpp"
#include "dhtkit/peer/replica_tables.hpp"
#include "dhtkit/protocol/codec.hpp"
#include "dhtkit/protocol/messages.hpp"
#include "dhtkit/store/locked_table.hpp"
#include "dhtkit/store/stable_hash.hpp"
#include "dhtkit/store/versioned.hpp"

namespace dhtkit {

template <string_table Table>
class index_service : public replica_tables<Table> {
    using base = replica_tables<Table>;

public:
    using base::purge_horizon;
    using base::purgeable;
    using base::record_of;

    // `max_skew`: a version stamped further ahead of this host's clock is refused, so that one
    // bad clock (or one forged record) cannot make every later write to a key lose.
    index_service(Table& keys, Table& files, std::uint64_t writer,
                  std::size_t max_value_bytes = std::numeric_limits<std::size_t>::max(),
                  std::chrono::milliseconds max_skew = std::chrono::seconds(60))
        : base(keys, files, max_skew), clock_(writer), max_value_bytes_(max_value_bytes) {}

    // True when `op` is one of ours.
    [[nodiscard]] static bool handles(protocol::opcode op) noexcept {
        using protocol::opcode;
        return op == opcode::put || op == opcode::get || op == opcode::del || op == opcode::expire ||
               op == opcode::register_file || op == opcode::unregister_file || op == opcode::search;
    }
    [[nodiscard]] static bool is_write(protocol::opcode op) noexcept {
        using protocol::opcode;
        return op == opcode::put || op == opcode::del || op == opcode::expire || op == opcode::register_file ||
               op == opcode::unregister_file;
    }

    // Answers one request: its outcome in `out`. Returns true when it changed an entry; `record` then holds the replication record (the value of a replicate frame whose key
    // is f.key) that the other replicas must apply.
    bool handle(const protocol::frame_view& f, outcome& out, std::string* record = nullptr) {
        using protocol::opcode;
        using protocol::status;
        protocol::header reply{f.h.op, 0, status::ok, f.h.request_id, 0, 0};
        std::string scratch;
        std::string& rec = record ? *record : scratch;
        rec.clear();
        bool wrote = false;
        std::optional<version> stamp;  // a client-stamped write's version
        std::string_view value = f.value;
        std::string answer;  // the reply's value
        if ((f.h.flags & protocol::flag_stamped) && (f.h.op == opcode::put || f.h.op == opcode::del || f.h.op == opcode::expire)) {
            stamp = read_version(value);
            if (!stamp || (f.h.op == opcode::del && value.size() != version_size)) {
                reply.code = status::bad_request;
                out.assign(reply, "a stamped write's value starts with its 24-byte version");
                return false;
            }
            value.remove_prefix(version_size);
            if (too_far_ahead(*stamp)) {
                reply.code = status::refused;
                out.assign(reply, "the write's stamp is ahead of this peer's clock by more than the cluster allows");
                return false;
            }
        }
        std::optional<protocol::put_options> options;
        if ((f.h.flags & protocol::flag_options) && f.h.op == opcode::put) {
            options = protocol::decode_put_options(value);
            if (!options) {
                reply.code = status::bad_request;
                out.assign(reply, "a put's options are a mask (u8, below 32) and an expiry (u64 ms, at most 2^63 - 1, set when it expires)");
                return false;
            }
            value.remove_prefix(protocol::put_options::size);
        }
        // A whole frame whose payload is refused: the stream is still in step, so the connection
        // stays open, and the reply says why.
        if (f.key.empty() && handles(f.h.op)) {
            reply.code = status::bad_request;
            out.assign(reply, "the key is empty");
            return false;
        }
        switch (f.h.op) {
            case opcode::put:
                if (value.size() > max_value_bytes_) {
                    reply.code = status::too_large;
                    out.assign(reply, fmt::format("the value is {} bytes; this peer's limit is {}", value.size(),
                                                       max_value_bytes_));
                    return false;
                }
                wrote = options ? put_with(f.key, value, *options, stamp, rec, answer)
                                : write(keys_, protocol::table_id::keys, f.key, false, value, rec, stamp);
                break;
            case opcode::get:
                if (f.h.flags & protocol::flag_own_copy) return own_copy(f, reply, out);
                answer_read(f, entry(keys_, f.key), out);
                return false;
            case opcode::expire: {
                auto at = protocol::decode_u64(value);
                if (!at || *at > protocol::latest_expiry_ms) {
                    reply.code = status::bad_request;
                    out.assign(reply, "an expire's value is the moment (u64 ms since the epoch, at most 2^63 - 1; 0: never)");
                    return false;
                }
                bool had = false;
                wrote = expire(f.key, *at, rec, had, stamp);
                if (!had) reply.code = status::not_found;
                else answer.assign(1, wrote ? '\1' : '\0');
                break;
            }
            case opcode::del: {
                const bool was_live = live(keys_, f.key).has_value();
                // A tombstone even for a key this replica lacks: a replica that missed the put
                // must not keep serving it.
                bool repeated = false;
                wrote = write(keys_, protocol::table_id::keys, f.key, true, {}, rec, stamp, &repeated);
                if (!was_live && !repeated) reply.code = status::not_found;  // a retry hears what the first try did
                break;
            }
            case opcode::register_file:
                wrote = register_holder(f, reply, rec);
                break;
            case opcode::unregister_file:
                wrote = unregister_holder(f, reply, rec);
                break;
            case opcode::search:
                if (f.h.flags & protocol::flag_own_copy) return own_copy(f, reply, out);
                answer_read(f, entry(files_, f.key), out);
                return false;
            default:
                reply.code = status::unknown_opcode;
                out.assign(reply, "not an index operation");
                return false;
        }
        out.assign(reply, answer);
        return wrote;
    }

    // The table a read or write of `op` goes to.
    [[nodiscard]] static protocol::table_id table_of(protocol::opcode op) noexcept {
        using protocol::opcode;
        return op == opcode::get || op == opcode::put || op == opcode::del || op == opcode::expire
                   ? protocol::table_id::keys
                   : protocol::table_id::files;
    }

private:
    // Another holder's majority read: this node's record of the key, tombstone or not.
    bool own_copy(const protocol::frame_view& f, protocol::header reply, outcome& out) const {
        auto rec = record_of(table_of(f.h.op), f.key);
        if (!rec) reply.code = protocol::status::not_found;
        out.assign(reply, rec ? std::string_view(*rec) : std::string_view{});
        return false;
    }

    // A put with options (SET's NX, XX, KEEPTTL, GET and expiry), decided on what is here now under
    // the entry's lock. `answer`: the reply's value (protocol::put_outcome). True as write() is.
    bool put_with(std::string_view key, std::string_view value, const protocol::put_options& o,
                  const std::optional<version>& stamp, std::string& rec, std::string& answer) {
        using protocol::put_options;
        bool set = false, had = false, again = false;
        std::string old;
        const auto now_ms = unix_ms_now();
        const bool changed = keys_.update(key, [&](auto now) -> std::optional<std::string> {
            version replacing{};
            std::optional<versioned_view> current;
            if (now)
                if (auto v = read_versioned(*now)) {
                    replacing = v->version;
                    if (!v->tombstone && !v->expired(now_ms)) current = v;
                }
            if (stamp && now && *stamp <= replacing) {  // a retry of this very write, or a late one
                if (*stamp == replacing) {
                    again = set = true;
                    rec.assign(1, static_cast<char>(protocol::table_id::keys));
                    rec += *now;
                }
                return std::nullopt;
            }
            had = current.has_value();
            if (had && (o.mask & put_options::return_old)) old.assign(current->payload);
            if ((o.mask & put_options::if_absent) && had) return std::nullopt;
            if ((o.mask & put_options::if_present) && !had) return std::nullopt;
            const auto expiry = (o.mask & put_options::expires)                 ? o.expires_at_ms
                                : had && (o.mask & put_options::keep_ttl) ? current->expires_at_ms
                                                                            : 0;
            rec.assign(1, static_cast<char>(protocol::table_id::keys));
            append_versioned(rec, stamp ? *stamp : clock_.next(replacing), false, value, expiry);
            set = true;
            return rec.substr(1);
        });
        answer.assign({set ? '\1' : '\0', had ? '\1' : '\0'});
        answer += old;
        return changed || again;
    }

    // Gives `key`'s live value a new expiry (0: none); one already due makes it a tombstone.
    // `had`: there was a live value. True when the entry changed (its record is in `rec`).
    // `stamp`: the version its sender fixed (a RESP command's arrival); a write newer than it is
    // here already: it came after this one and wins (answered as done, then overwritten).
    bool expire(std::string_view key, std::uint64_t at_ms, std::string& rec, bool& had,
                const std::optional<version>& stamp = std::nullopt) {
        const auto now_ms = unix_ms_now();
        bool again = false;
        const bool changed = keys_.update(key, [&](auto now) -> std::optional<std::string> {
            if (!now) return std::nullopt;
            auto v = read_versioned(*now);
            if (!v) return std::nullopt;
            if (stamp && *stamp <= v->version) {
                had = true;
                if (*stamp == v->version) {  // a retry: its copies go again
                    again = true;
                    rec.assign(1, static_cast<char>(protocol::table_id::keys));
                    rec += *now;
                }
                return std::nullopt;
            }
            if (v->tombstone || v->expired(now_ms)) return std::nullopt;
            had = true;
            if (at_ms == 0 && v->expires_at_ms == 0) return std::nullopt;  // PERSIST of a key that never expires
            const auto next = stamp ? *stamp : clock_.next(v->version);
            rec.assign(1, static_cast<char>(protocol::table_id::keys));
            if (at_ms != 0 && at_ms <= now_ms) append_versioned(rec, next, true, {});
            else append_versioned(rec, next, false, v->payload, at_ms);
            return rec.substr(1);
        });
        return changed || again;
    }

    // Stores the write, under `stamp` when the client fixed its version (then only if it is newer
    // than what is here: a request that arrives late loses to a write issued after it), else
    // under this node's next version. True when the other holders must apply `rec`: the entry
    // changed, or this very version is here already (a client's retry through another holder,
    // whose copies may not have reached every holder: they go again, and the write is
    // acknowledged by the same rule as the first time).
    bool write(Table& t, protocol::table_id id, std::string_view key, bool tombstone, std::string_view payload,
               std::string& rec, const std::optional<version>& stamp = std::nullopt, bool* repeated = nullptr) {
        bool again = false;
        bool changed = t.update(key, [&](auto now) -> std::optional<std::string> {
            version replacing{};
            if (now)
                if (auto v = read_versioned(*now)) replacing = v->version;
            if (stamp && now && *stamp <= replacing) {
                if (*stamp == replacing) {
                    again = true;
                    rec.assign(1, static_cast<char>(id));
                    rec += *now;
                }
                return std::nullopt;
            }
            rec.assign(1, static_cast<char>(id));
            append_versioned(rec, stamp ? *stamp : clock_.next(replacing), tombstone, payload);
            return rec.substr(1);
        });
        if (repeated) *repeated = again;
        return changed || again;
    }

    // NAME -> holders is changed as a whole list: the list is read, changed and stored under the
    // entry's lock, and the whole new list is what replicates.
    template <class Change>
    bool change_holders(std::string_view name, Change&& change, std::string& rec) {
        bool changed = false;
        files_.update(name, [&](auto now) -> std::optional<std::string> {
            std::vector<protocol::holder> list;
            version replacing{};
            if (now) {
                if (auto v = read_versioned(*now)) {
                    replacing = v->version;
                    if (!v->tombstone) list = protocol::decode_holders(v->payload).value_or(std::vector<protocol::holder>{});
                }
            }
            if (!change(list)) return std::nullopt;
            changed = true;
            rec.assign(1, static_cast<char>(protocol::table_id::files));
            append_versioned(rec, clock_.next(replacing), false, protocol::encode_holders(list));
            return rec.substr(1);
        });
        return changed;
    }

    bool register_holder(const protocol::frame_view& f, protocol::header& reply, std::string& rec) {
        auto added = protocol::decode_holders(f.value);
        if (f.key.empty() || !added || added->size() != 1) {
            reply.code = protocol::status::bad_request;
            return false;
        }
        const protocol::holder& h = added->front();
        return change_holders(f.key, [&](std::vector<protocol::holder>& list) {
            // One record per peer: registering again replaces the old size and checksum.
            auto same = std::find(list.begin(), list.end(), h);
            if (same != list.end()) return false;
            std::erase_if(list, [&](const protocol::holder& x) { return x.peer_id == h.peer_id; });
            list.push_back(h);
            return true;
        }, rec);
    }

    bool unregister_holder(const protocol::frame_view& f, protocol::header& reply, std::string& rec) {
        auto peer = protocol::decode_u64(f.value);
        if (!peer) {
            reply.code = protocol::status::bad_request;
            return false;
        }
        bool wrote = change_holders(f.key, [&](std::vector<protocol::holder>& list) {
            return std::erase_if(list, [&](const protocol::holder& x) { return x.peer_id == *peer; }) > 0;
        }, rec);
        if (!wrote) reply.code = protocol::status::not_found;
        return wrote;
    }

    using base::entry;
    using base::files_;
    using base::keys_;
    using base::live;
    using base::too_far_ahead;

    version_clock clock_;
    std::size_t max_value_bytes_;
};

}  // namespace dhtkit
