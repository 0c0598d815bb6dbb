#pragma once
// The client side of the cluster: long-lived connections to the nodes of the cluster map (opened
// on first use, reopened after a failure), requests routed to the holders of a key's slot, and
// file downloads.
//
// Every call is synchronous and thread-safe; calls to different peers run in parallel, calls to
// one peer take turns on its connection.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "dhtkit/cluster/cluster_map.hpp"
#include "dhtkit/cluster/handshake.hpp"
#include "dhtkit/cluster/map_codec.hpp"
#include "dhtkit/peer/file_download.hpp"
#include "dhtkit/peer/initial_map.hpp"
#include "dhtkit/peer/own_writes.hpp"
#include "dhtkit/peer/peer_link.hpp"
#include "dhtkit/peer/reply.hpp"
#include "dhtkit/peer/settings.hpp"
#include "dhtkit/protocol/messages.hpp"
#include "dhtkit/protocol/rpc.hpp"
#include "dhtkit/store/stable_hash.hpp"
#include "dhtkit/store/versioned.hpp"

namespace dhtkit {

// Requests for a key go to its home peer; when the home cannot be reached (refused, reset, timed
// out) to its replicas in turn, which serve reads and take writes for it meanwhile.
class client {
public:
    // Follows `view`, which the caller may share (a peer's own client reads the peer's map).
    // `source` names where the map came from (a config file), for the words of a mismatch.
    // `secret`: the cluster's key, when this client is one of its nodes (or their operator's tool).
    // `password`: the cluster's client password, sent on every connection it opens, if any.
    client(std::shared_ptr<const cluster_view> view, limits_settings lim, client_options opt = {}, std::string source = {},
           std::shared_ptr<const protocol::cluster_key> secret = nullptr, std::string password = {})
        : view_(std::move(view)), limits_(lim), options_(opt), source_(std::move(source)), secret_(std::move(secret)),
          password_(std::move(password)) {}
    // A client of the static cluster in `cluster` (its peers in file order, static backup), with
    // the cluster's secret when the settings name one.
    // A client of a live cluster ([replication] policy = "dynamic") follows its map: a node that
    // answers `moved` (its map is newer) is asked for its map (`map`, with its slot table: the
    // client need not know how the peers place slots), and the request tried again; so is any
    // node that answers when none of a key's holders do. Knowing the seeds is enough to reach
    // every key.
    explicit client(const cluster_settings& cluster, client_options opt = {})
        : client(std::make_shared<cluster_view>(initial_cluster_map(cluster)),
                 cluster.limits, opt, cluster.source.string(), cluster.cluster_key, cluster.client_password) {
        if (cluster.live_membership) own_view_ = std::const_pointer_cast<cluster_view>(view_);
    }

    [[nodiscard]] const cluster_map& map() const noexcept { return view_->current(); }
    // What this client says first on a connection: its map's digest, and its credentials.
    [[nodiscard]] protocol::hello_request hello() const { return {map().hello_digest(), source_, secret_, password_}; }
    [[nodiscard]] node_id home_of(std::string_view key) const { return map().holders_of_key(key).front(); }

    // The nodes that hold `key`, in the order requests for it try them.
    [[nodiscard]] std::vector<node_id> holders(std::string_view key) const {
        auto h = map().holders_of_key(key);
        return {h.begin(), h.end()};
    }

    // One request to node `id`; unavailable when the map has no such node.
    reply call(node_id id, protocol::opcode op, std::string_view key, std::string_view value = {},
               bool even_if_down = true, std::uint8_t flags = 0) {
        auto* l = link(id);
        // A member that joined a live cluster since this client's map was made: a newer map has it.
        if (!l && own_view_ && learn_map_from_anyone()) l = link(id);
        if (!l) return {protocol::status::unavailable, {}, fmt::format("peer {} is not in the cluster map", id), false};
        return l->call(op, key, value, even_if_down, flags);
    }

    // Sends a request about `key` to the first of its holders that answers and can serve it (a
    // peer catching up after a restart answers `unavailable`). When a holder answered and none
    // could serve, the cluster is settling (a holder died a moment ago and the others do not know
    // yet whether it is gone, or it is catching up): the holders are asked again, a little later
    // each time, until the request's timeout. Writes carry their version, so a repeat is harmless.
    reply call_key(protocol::opcode op, std::string_view key, std::string_view value = {}, std::uint8_t flags = 0) {
        const auto give_up = std::chrono::steady_clock::now() + options_.request_timeout;
        auto pause = std::chrono::milliseconds(10);
        for (;;) {
            bool settling = false;
            auto r = ask_holders(op, key, value, flags, settling);
            if (!settling || r.code != protocol::status::unavailable ||
                std::chrono::steady_clock::now() + pause >= give_up)
                return r;
            std::this_thread::sleep_for(pause);
            pause = std::min(pause * 2, std::chrono::milliseconds(100));
        }
    }

    // Asks node `id` for its map and follows it when it is newer than this client's. True when it was.
    bool learn_map_from(node_id id) {
        if (!own_view_) return false;
        auto r = call(id, protocol::opcode::map, {});
        if (!r.ok()) return false;
        auto sent = protocol::decode_map(r.value);
        if (!sent) return false;
        std::lock_guard lock(learn_mutex_);
        const auto& now = map();
        if (sent->epoch <= now.epoch()) return false;
        own_view_->publish(cluster_map(sent->epoch, std::move(sent->nodes), std::move(sent->slots), now.hello_digest()));
        return true;
    }
    // The same, from the first node of the map that answers with a newer map.
    bool learn_map_from_anyone() {
        const auto nodes = map().nodes();
        for (const auto& n : nodes)
            if (placed(n.state) && learn_map_from(n.id)) return true;
        return false;
    }

    // Writes are stamped here, once: the version travels unchanged to every holder this call
    // tries, so a copy of the request that arrives late loses to any write issued after it.
    reply put(std::string_view key, std::string_view value) {
        if (auto bad = check_key(key, value)) return *bad;
        thread_local std::string stamped;
        stamped.clear();
        const auto v = clock_.next();
        append_version(stamped, v);
        stamped += value;
        auto r = call_key(protocol::opcode::put, key, stamped, protocol::flag_stamped);
        if (r.ok()) own_.acknowledged(key, v, false);
        return r;
    }
    // The same, the value expiring `ttl` from now: an absolute moment, so that every holder drops
    // it at once. Its clock and this host's should agree to well within the ttl.
    reply put(std::string_view key, std::string_view value, std::chrono::milliseconds ttl) {
        if (auto bad = check_key(key, value)) return *bad;
        if (ttl.count() <= 0) return {protocol::status::bad_request, {}, "a ttl is a positive time", false};
        std::string stamped;
        const auto v = clock_.next();
        append_version(stamped, v);
        protocol::append(stamped, protocol::put_options{protocol::put_options::expires,
                                                        unix_ms_now() + static_cast<std::uint64_t>(ttl.count())});
        stamped += value;
        auto r = call_key(protocol::opcode::put, key, stamped, protocol::flag_stamped | protocol::flag_options);
        if (r.ok()) own_.acknowledged(key, v, false);
        if (r.ok()) r.value.clear();  // what happened: it was set
        return r;
    }
    // How long `key` has left: value "none" when it never expires, else the milliseconds left.
    reply ttl(std::string_view key) {
        if (auto bad = check_key(key, {})) return *bad;
        auto r = call_key(protocol::opcode::get, key, {}, protocol::flag_options);
        if (!r.ok()) return r;
        auto at = protocol::decode_expiry(r.value);
        if (!at) return {protocol::status::internal_error, {}, "a ttl answer without an expiry", true};
        const auto now = unix_ms_now();
        r.value = *at == 0 ? std::string("none") : std::to_string(*at > now ? *at - now : 0);
        return r;
    }
    // Read-your-writes: an answer older than this client's own last acknowledged write of the
    // key (own_writes.hpp) is not returned; the key's other holders are asked, and when none has
    // that write yet the answer is `unavailable`, never the older value.
    reply get(std::string_view key) {
        if (auto bad = check_key(key, {})) return *bad;
        auto r = call_key(protocol::opcode::get, key, {}, protocol::flag_stamped);
        if (older_than_own(key, r)) {
            bool fresh = false;
            for (auto id : holders(key)) {
                r = call(id, protocol::opcode::get, key, {}, true, protocol::flag_stamped);
                if ((fresh = !older_than_own(key, r))) break;
            }
            if (!fresh)
                return {protocol::status::unavailable, {},
                        fmt::format("no holder of '{}' answers with this client's last acknowledged write of it yet", key),
                        true};
        }
        if (r.flags & protocol::flag_stamped) {
            if (auto v = read_version(r.value)) clock_.observe(*v);  // later writes are stamped above it
            r.value.erase(0, std::min(r.value.size(), version_size));
            r.flags = 0;
        }
        return r;
    }
    reply del(std::string_view key) {
        if (auto bad = check_key(key, {})) return *bad;
        std::string stamp;
        const auto v = clock_.next();
        append_version(stamp, v);
        auto r = call_key(protocol::opcode::del, key, stamp, protocol::flag_stamped);
        if (r.ok() || r.code == protocol::status::not_found) own_.acknowledged(key, v, true);
        return r;
    }
    // This client's id: the writer named in the versions it stamps.
    [[nodiscard]] std::uint64_t id() const noexcept { return clock_.writer(); }
    reply register_holder(std::string_view name, const protocol::holder& h) {
        std::string value;
        protocol::append(value, h);
        return call_key(protocol::opcode::register_file, name, value);
    }
    reply unregister_holder(std::string_view name, node_id peer) {
        return call_key(protocol::opcode::unregister_file, name, protocol::encode_u64(peer));
    }
    // The holders of NAME (empty with not_found when nobody registered it).
    std::pair<reply, std::vector<protocol::holder>> search(std::string_view name) {
        auto r = call_key(protocol::opcode::search, name);
        if (!r.ok()) return {r, {}};
        auto holders = protocol::decode_holders(r.value);
        if (!holders) return {{protocol::status::bad_request, {}, "search: malformed holder list in the reply"}, {}};
        return {r, std::move(*holders)};
    }

    // Downloads NAME to `dest` from the first holder that delivers it whole and verified.
    // Checks first that DEST can be written; tries no other holder once the failure is this side's
    // (the destination, or a stop requested through `stop`).
    // `replace_read_only`: a file at DEST that this user may not write is replaced too.
    download_result obtain(std::string_view name, const std::filesystem::path& dest,
                           const download_progress& progress = {}, std::stop_token stop = {}, bool replace_read_only = false) {
        if (auto why = destination_refusal(dest, replace_read_only))
            return {protocol::status::refused, fmt::format("obtain '{}': cannot write {}: {}", name, dest.string(), *why)};
        auto [found, holders] = search(name);
        if (!found.ok()) return {found.code, found.code == protocol::status::not_found
                                                 ? fmt::format("no peer has registered '{}'", name)
                                                 : found.error};
        download_result last{protocol::status::unavailable, "no holder could be reached"};
        std::string errors;  // every holder tried, by name
        for (const auto& h : holders) {
            last = download_file(h, name, dest, options_.connect_timeout, options_.transfer_timeout, progress, hello(), stop);
            if (last.ok() || last.here) return last;
            errors += (errors.empty() ? "" : "; ") + last.error;
        }
        if (!errors.empty()) last.error = errors;
        return last;
    }

private:
    // One pass over `key`'s holders (and newer maps, if they moved); `settling`: one of them
    // answered `unavailable`.
    reply ask_holders(protocol::opcode op, std::string_view key, std::string_view value, std::uint8_t flags,
                      bool& settling) {
        reply r{protocol::status::unavailable, {}, fmt::format("no node holds slot {}", key_slot(key)), false};
        // A live map may move under a request: a few rounds of learning a newer one, no more.
        for (int round = 0; round < 4; ++round) {
            auto order = holders(key);
            bool moved = false;
            for (std::size_t i = 0; i < order.size() && !moved; ++i) {
                r = call(order[i], op, key, value, i + 1 == order.size(), flags);
                if (r.answered && r.code == protocol::status::moved && own_view_) moved = learn_map_from(order[i]);
                else if (r.answered && r.code != protocol::status::unavailable) return r;
                else if (r.answered) settling = true;
            }
            if (!moved && !(own_view_ && learn_map_from_anyone())) return r;
        }
        return r;
    }

    // The link to node `id` of the current map, made on first use; nullptr when it is not in the map.
    peer_link* link(node_id id) {
        std::lock_guard lock(links_mutex_);
        auto it = links_.find(id);
        const node* n = map().find(id);
        if (it != links_.end() && n && it->second->target().host == n->host && it->second->target().port == n->port)
            return it->second.get();
        if (!n) return nullptr;
        auto& slot = links_[id];
        slot = std::make_unique<peer_link>(*n, protocol::frame_limits(limits_.max_key_bytes, limits_.max_value_bytes),
                                           options_, hello());
        return slot.get();
    }

    // Whether a stamped get's answer is older than this client's own last write of `key`; an
    // answer that is neither a value nor not_found (an error) is for the caller to see as it is.
    [[nodiscard]] bool older_than_own(std::string_view key, const reply& r) const {
        if (r.ok() && (r.flags & protocol::flag_stamped)) return own_.older_than_own(key, read_version(r.value), false);
        if (r.code == protocol::status::not_found)  // with the version of the delete, when the holder had one
            return own_.older_than_own(key, (r.flags & protocol::flag_stamped) ? read_version(r.value) : std::nullopt, true);
        return false;
    }

    std::optional<reply> check_key(std::string_view key, std::string_view value) const {
        using protocol::status;
        if (key.empty()) return reply{status::bad_request, {}, "the key is empty"};
        if (key.size() > limits_.max_key_bytes)
            return reply{status::too_large, {}, fmt::format("the key is {} bytes; the cluster's limit is {}",
                                                            key.size(), limits_.max_key_bytes)};
        if (value.size() > limits_.max_value_bytes)
            return reply{status::too_large, {}, fmt::format("the value is {} bytes; the cluster's limit is {}",
                                                            value.size(), limits_.max_value_bytes)};
        return std::nullopt;
    }

    // A random id: clients need no registry to be told apart, and a restarted client is a new writer.
    static std::uint64_t random_id() {
        std::random_device rd;
        std::uint64_t id = (std::uint64_t{rd()} << 32) ^ rd() ^
                           static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
        return id | 1;
    }

    std::shared_ptr<const cluster_view> view_;
    std::shared_ptr<cluster_view> own_view_;  // a live cluster's client: the view it follows, set once
    std::mutex learn_mutex_;
    limits_settings limits_;
    client_options options_;
    std::string source_;
    std::shared_ptr<const protocol::cluster_key> secret_;
    std::string password_;
    version_clock clock_{random_id()};
    own_writes own_;  // read-your-writes
    std::mutex links_mutex_;
    // Links are kept while the client lives: a caller may be inside one when the map changes.
    std::unordered_map<node_id, std::unique_ptr<peer_link>> links_;  // guarded by links_mutex_
};

}  // namespace dhtkit
