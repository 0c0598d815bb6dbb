// libFuzzer target: arbitrary bytes through the frame reader and, for every whole frame, the
// request handlers and payload decoders behind it; and the same bytes as one gossip datagram,
// whose records go into a membership view. Any crash, sanitizer report, or a reader that
// buffers past its limit is a finding.

#include <dhtkit/peer/index_service.hpp>
#include <dhtkit/protocol/auth.hpp>
#include <dhtkit/protocol/codec.hpp>
#include <dhtkit/cluster/gossip.hpp>
#include <dhtkit/protocol/messages.hpp>

#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>

namespace {
using table = dhtkit::locked_table<std::string, std::string>;
table keys, files;
dhtkit::index_service<table> service(keys, files, 0, 1 << 20);
const dhtkit::protocol::cluster_key key = dhtkit::protocol::derive_key("the fuzzer's cluster secret");
std::optional<dhtkit::membership> view;

// A datagram that reads must read the same once written again, and its records apply to a view
// without breaking the view's rules (the epoch never goes down).
void gossip(std::string_view datagram) {
    using namespace dhtkit::protocol;
    (void)decode_gossip(datagram, &key);
    auto m = decode_gossip(datagram, nullptr);
    if (!m) return;
    auto again = decode_gossip(encode(*m, nullptr), nullptr);
    if (!again || again->records != m->records || again->seq != m->seq || again->kind != m->kind) std::abort();
    if (!view || view->members().size() > 10000) view.emplace(dhtkit::node{1, "127.0.0.1", 7001}, std::vector<dhtkit::node>{});
    const auto now = dhtkit::membership::clock::now();
    for (auto& r : m->records) {
        const auto before = view->epoch();
        if (view->apply(r, now) ? view->epoch() <= before : view->epoch() != before) std::abort();
    }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace dhtkit::protocol;
    const dhtkit::protocol::limits lim{64, 4096};
    frame_reader reader(lim);
    std::string_view input(reinterpret_cast<const char*>(data), size);
    gossip(input);
    // Two deliveries, split where the first byte says: frames cut at any point must reassemble.
    std::size_t cut = size ? static_cast<std::size_t>(data[0]) % (size + 1) : 0;
    dhtkit::outcome out;
    frame_verifier verifier(key, session_nonce{});  // one connection's: ids must rise across frames
    for (std::string_view part : {input.substr(0, cut), input.substr(cut)}) {
        reader.feed(part);
        frame_view f;
        for (;;) {
            auto r = reader.next(f);
            if (r == frame_reader::result::need_more) break;
            if (r == frame_reader::result::error) return 0;
            if (f.key.size() > lim.max_key_bytes || f.value.size() > lim.max_value_bytes) std::abort();
            (void)decode_holders(f.value);
            (void)decode_file_meta(f.value);
            (void)decode_u64(f.value);
            (void)decode_sync_request(f.value);
            (void)decode_sync_request(f.value, true);
            (void)decode_hello(f.value);
            if (auto l = decode_lease_request(f.value); l && f.value.size() == 16 && encode(*l) != f.value) std::abort();
            if (auto m = decode_map(f.value); m && encode_map(m->epoch, m->nodes, m->slots) != f.value) std::abort();
            (void)dhtkit::read_version(f.value);
            if (f.h.flags & flag_signed) {
                frame_view checked = f;
                if (verifier.verify(checked) && checked.value.size() + mac_size != f.value.size()) std::abort();
            }
            if (dhtkit::index_service<table>::handles(f.h.op)) service.handle(f, out);
            else if (f.h.op == dhtkit::protocol::opcode::replicate) service.apply(f.key, f.value);
            out = {};
        }
        if (reader.buffered() > header_size + lim.max_key_bytes + lim.max_value_bytes) std::abort();
    }
    if (keys.size() > 100000) keys.clear();
    if (files.size() > 100000) files.clear();
    return 0;
}
