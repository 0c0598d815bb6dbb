#pragma once
// The index server: the keys this peer is home to (put, get, del) and the file registry
// (NAME -> holders). Pure request-to-reply logic over the shared tables, with no sockets, so the
// fuzzer and the unit tests drive it directly.

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "dhtkit/protocol/codec.hpp"
#include "dhtkit/protocol/messages.hpp"
#include "dhtkit/store/locked_table.hpp"

namespace dhtkit {

template <table Table>
class index_service {
public:
    index_service(Table& keys, Table& files) : keys_(keys), files_(files) {}

    // True when `op` is one of ours.
    [[nodiscard]] static bool handles(protocol::opcode op) noexcept {
        using protocol::opcode;
        return op == opcode::put || op == opcode::get || op == opcode::del ||
               op == opcode::register_file || op == opcode::unregister_file || op == opcode::search;
    }

    // Answers one request, appending the reply frame to `out`.
    void handle(const protocol::frame_view& f, std::string& out) {
        using protocol::opcode;
        using protocol::status;
        protocol::header reply{f.h.op, 0, status::ok, f.h.request_id, 0, 0};
        switch (f.h.op) {
            case opcode::put:
                keys_.put(f.key, f.value);
                return protocol::append_frame(out, reply, {}, {});
            case opcode::get:
                if (!keys_.get(f.key, value_)) {
                    reply.code = status::not_found;
                    return protocol::append_frame(out, reply, {}, {});
                }
                return protocol::append_frame(out, reply, {}, value_);
            case opcode::del:
                if (!keys_.erase(f.key)) reply.code = status::not_found;
                return protocol::append_frame(out, reply, {}, {});
            case opcode::register_file:
                return protocol::append_frame(out, register_holder(f, reply), {}, {});
            case opcode::unregister_file:
                return protocol::append_frame(out, unregister_holder(f, reply), {}, {});
            case opcode::search: {
                std::string list;
                if (!files_.get(f.key, list) || list.empty()) reply.code = status::not_found;
                return protocol::append_frame(out, reply, {}, list);
            }
            default:
                reply.code = status::unknown_opcode;
                return protocol::append_frame(out, reply, {}, "not an index operation");
        }
    }

private:
    protocol::header register_holder(const protocol::frame_view& f, protocol::header reply) {
        auto added = protocol::decode_holders(f.value);
        if (f.key.empty() || !added || added->size() != 1) {
            reply.code = protocol::status::bad_request;
            return reply;
        }
        const protocol::holder& h = added->front();
        files_.update(f.key, [&](std::optional<std::string_view> now) {
            std::vector<protocol::holder> list;
            if (now) list = protocol::decode_holders(*now).value_or(std::vector<protocol::holder>{});
            // One record per peer: registering again replaces the old size and checksum.
            std::erase_if(list, [&](const protocol::holder& x) { return x.peer_id == h.peer_id; });
            list.push_back(h);
            return std::optional<std::string>(protocol::encode_holders(list));
        });
        return reply;
    }

    protocol::header unregister_holder(const protocol::frame_view& f, protocol::header reply) {
        auto peer = protocol::decode_u32(f.value);
        if (!peer) {
            reply.code = protocol::status::bad_request;
            return reply;
        }
        bool removed = false;
        files_.update(f.key, [&](std::optional<std::string_view> now) -> std::optional<std::string> {
            if (!now) return std::nullopt;
            auto list = protocol::decode_holders(*now).value_or(std::vector<protocol::holder>{});
            auto before = list.size();
            std::erase_if(list, [&](const protocol::holder& x) { return x.peer_id == *peer; });
            removed = list.size() != before;
            return removed ? std::optional<std::string>(protocol::encode_holders(list)) : std::nullopt;
        });
        if (!removed) reply.code = protocol::status::not_found;
        return reply;
    }

    Table& keys_;
    Table& files_;
    inline static thread_local std::string value_;  // reused per worker: a get allocates nothing
};

}  // namespace dhtkit
