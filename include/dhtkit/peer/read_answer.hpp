#pragma once
// The reply to a read (get, search) from the entry a holder has for its key: the value, its
// version when the client stamps its requests, its expiry for TTL, or not_found. One function for
// every holder that answers a read: from its own copy (peer/index_service.hpp) or from the newest
// record of a quorum (peer/key_service.hpp).

#include <optional>

#include "dhtkit/peer/outcome.hpp"
#include "dhtkit/protocol/codec.hpp"
#include "dhtkit/protocol/frame.hpp"
#include "dhtkit/protocol/messages.hpp"
#include "dhtkit/store/versioned.hpp"

namespace dhtkit {

// The answer to read request `f` (get or search) when `e` is the key's entry (live, a
// tombstone, or expired), or none. A stamped get that finds a tombstone or an expired value
// hears not_found with that entry's version, so that a client can tell a delete newer than its
// own write from a holder that has not seen its write yet.
inline void answer_read(const protocol::frame_view& f, const std::optional<versioned_view>& e, outcome& out) {
    protocol::header reply{f.h.op, 0, protocol::status::ok, f.h.request_id, 0, 0};
    const auto* v = e && !e->tombstone && !e->expired(unix_ms_now()) ? &*e : nullptr;
    if (!v || (f.h.op == protocol::opcode::search && v->payload.empty())) {
        reply.code = protocol::status::not_found;
        if (e && f.h.op == protocol::opcode::get && (f.h.flags & protocol::flag_stamped)) {
            reply.flags = protocol::flag_stamped;
            append_version(out.assign(reply).value, e->version);
            return;
        }
        out.assign(reply, {});
        return;
    }
    if (f.h.op == protocol::opcode::get && (f.h.flags & protocol::flag_stamped)) {  // the version too, for the client's clock
        reply.flags = protocol::flag_stamped;
        append_version(out.assign(reply).value, v->version);
        out.value += v->payload;
        return;
    }
    if (f.h.op == protocol::opcode::get && (f.h.flags & protocol::flag_options)) {  // its expiry too (TTL)
        reply.flags = protocol::flag_options;
        out.assign(reply, protocol::encode_u64(v->expires_at_ms)).value += v->payload;
        return;
    }
    out.assign(reply, v->payload);
}

}  // namespace dhtkit
