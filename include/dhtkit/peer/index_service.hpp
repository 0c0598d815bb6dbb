#pragma once
// The index server: the keys this peer holds (put, get, del) and the file registry
// (NAME -> holders). Pure request-to-reply logic over the shared tables, with no sockets, so the
// fuzzer and the unit tests drive it directly.
//
// Every entry is versioned (store/versioned.hpp). A write a client sent here is given a new
// version and stored; what it stored comes back as a replication record for the peer to copy to
// the key's other replicas, which apply it only if it is newer than what they have. A deletion
// leaves a tombstone, so that an older copy arriving later cannot bring the value back.

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dhtkit/protocol/codec.hpp"
#include "dhtkit/protocol/messages.hpp"
#include "dhtkit/store/locked_table.hpp"
#include "dhtkit/store/versioned.hpp"

namespace dhtkit {

template <table Table>
class index_service {
public:
    index_service(Table& keys, Table& files, std::uint64_t writer,
                  std::size_t max_value_bytes = std::numeric_limits<std::size_t>::max())
        : keys_(keys), files_(files), clock_(writer), max_value_bytes_(max_value_bytes) {}

    // True when `op` is one of ours.
    [[nodiscard]] static bool handles(protocol::opcode op) noexcept {
        using protocol::opcode;
        return op == opcode::put || op == opcode::get || op == opcode::del ||
               op == opcode::register_file || op == opcode::unregister_file || op == opcode::search;
    }
    [[nodiscard]] static bool is_write(protocol::opcode op) noexcept {
        using protocol::opcode;
        return op == opcode::put || op == opcode::del || op == opcode::register_file || op == opcode::unregister_file;
    }

    // Answers one request, appending the reply frame to `out`. Returns true when it changed an
    // entry; `record` then holds the replication record (the value of a replicate frame whose key
    // is f.key) that the other replicas must apply.
    bool handle(const protocol::frame_view& f, std::string& out, std::string* record = nullptr) {
        using protocol::opcode;
        using protocol::status;
        protocol::header reply{f.h.op, 0, status::ok, f.h.request_id, 0, 0};
        std::string scratch;
        std::string& rec = record ? *record : scratch;
        rec.clear();
        bool wrote = false;
        switch (f.h.op) {
            case opcode::put:
                if (f.key.empty() || f.value.size() > max_value_bytes_) {
                    reply.code = f.key.empty() ? status::bad_request : status::too_large;
                    break;
                }
                wrote = write(keys_, protocol::table_id::keys, f.key, false, f.value, rec);
                break;
            case opcode::get: {
                auto v = live(keys_, f.key);
                if (!v) {
                    reply.code = status::not_found;
                    break;
                }
                protocol::append_frame(out, reply, {}, v->payload);
                return false;
            }
            case opcode::del:
                if (!live(keys_, f.key)) reply.code = status::not_found;
                // A tombstone even for a key this replica lacks: a replica that missed the put
                // must not keep serving it.
                wrote = write(keys_, protocol::table_id::keys, f.key, true, {}, rec);
                break;
            case opcode::register_file:
                wrote = register_holder(f, reply, rec);
                break;
            case opcode::unregister_file:
                wrote = unregister_holder(f, reply, rec);
                break;
            case opcode::search: {
                auto v = live(files_, f.key);
                if (!v || v->payload.empty()) reply.code = status::not_found;
                protocol::append_frame(out, reply, {}, v ? v->payload : std::string_view{});
                return false;
            }
            default:
                reply.code = status::unknown_opcode;
                protocol::append_frame(out, reply, {}, "not an index operation");
                return false;
        }
        protocol::append_frame(out, reply, {}, {});
        return wrote;
    }

    // Applies a record another replica sent. False when it is malformed; a record older than the
    // entry here is accepted and ignored.
    bool apply(std::string_view key, std::string_view record) {
        auto table = protocol::record_table(record);
        if (!table || key.empty()) return false;
        auto entry = record.substr(1);
        auto incoming = read_versioned(entry);
        if (!incoming) return false;
        (*table == protocol::table_id::keys ? keys_ : files_).update(key, [&](auto now) -> std::optional<std::string> {
            if (now) {
                auto mine = read_versioned(*now);
                if (mine && mine->version >= incoming->version) return std::nullopt;
            }
            return std::string(entry);
        });
        return true;
    }

    // The record of what this replica holds for `key`, for re-sending it to a replica that missed it.
    [[nodiscard]] std::optional<std::string> record_of(protocol::table_id t, std::string_view key) const {
        auto v = (t == protocol::table_id::keys ? keys_ : files_).try_get(key);
        if (!v) return std::nullopt;
        std::string rec(1, static_cast<char>(t));
        rec += *v;
        return rec;
    }

    // Calls f(key, record) for every entry of both tables (tombstones included), for a replica
    // catching up. Holds one shard's lock at a time, and calls between() after each with none held.
    template <class F, class G>
    void for_each_record(F&& f, G&& between) const {
        std::string rec;
        for (auto t : {protocol::table_id::keys, protocol::table_id::files}) {
            (t == protocol::table_id::keys ? keys_ : files_).for_each([&](std::string_view k, std::string_view v) {
                rec.assign(1, static_cast<char>(t));
                rec += v;
                f(k, std::string_view(rec));
            }, between);
        }
    }
    template <class F>
    void for_each_record(F&& f) const {
        for_each_record(std::forward<F>(f), [] {});
    }

    // The same for one shard (below Table::shard_count) of one table.
    template <class F>
    void for_each_record_in(protocol::table_id t, std::size_t shard, F&& f) const {
        std::string rec;
        (t == protocol::table_id::keys ? keys_ : files_).for_each_in(shard, [&](std::string_view k, std::string_view v) {
            rec.assign(1, static_cast<char>(t));
            rec += v;
            f(k, std::string_view(rec));
        });
    }

private:
    // The live entry of `key`; std::nullopt for none or a tombstone. The view points into a
    // per-thread copy, valid until this thread's next call.
    std::optional<versioned_view> live(const Table& t, std::string_view key) const {
        if (!t.get(key, value_)) return std::nullopt;
        auto v = read_versioned(value_);
        if (!v || v->tombstone) return std::nullopt;
        return v;
    }

    bool write(Table& t, protocol::table_id id, std::string_view key, bool tombstone, std::string_view payload,
               std::string& rec) {
        t.update(key, [&](auto now) -> std::optional<std::string> {
            version replacing{};
            if (now)
                if (auto v = read_versioned(*now)) replacing = v->version;
            rec.assign(1, static_cast<char>(id));
            append_versioned(rec, clock_.next(replacing), tombstone, payload);
            return rec.substr(1);
        });
        return true;
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

    Table& keys_;
    Table& files_;
    version_clock clock_;
    std::size_t max_value_bytes_;
    inline static thread_local std::string value_;  // reused per worker: a get allocates nothing
};

}  // namespace dhtkit
