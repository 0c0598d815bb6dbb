#pragma once
// dhtkit::peer composes the policies into one peer of the cluster: an index server (keys and the
// file registry), a file server, and a client of the other peers. It does little else.
//
// Threading: one listener thread runs the reactor and accepts connections; the dispatch policy
// decides which worker serves a connection's requests (dispatch.hpp: the seed's thread pool, or a
// loop per worker). A worker reads the requests, runs them against the shared tables and replies
// on the same connection. Connections stay open between requests and cost no thread while idle.
//
// Replication (docs/replication.md): a write is applied here, then its record goes to the key's
// other holders through the replicator; the connection is parked, its replies held back, until
// every reachable holder has applied it. No worker ever waits on the network for that. At start
// the peer listens, catches up from the others on the ranges it holds, and only then serves
// client requests.
#include <sys/resource.h>

#include <array>
#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>

#include <fmt/format.h>

#include "dhtkit/cluster/catch_up.hpp"
#include "dhtkit/cluster/cluster_map.hpp"
#include "dhtkit/cluster/replication.hpp"
#include "dhtkit/cluster/replicator.hpp"
#include "dhtkit/concurrency/thread_pool.hpp"
#include "dhtkit/net/reactor.hpp"
#include "dhtkit/net/socket.hpp"
#include "dhtkit/peer/client.hpp"
#include "dhtkit/peer/dispatch.hpp"
#include "dhtkit/peer/file_copier.hpp"
#include "dhtkit/peer/index_service.hpp"
#include "dhtkit/peer/shared_folder.hpp"
#include "dhtkit/peer/settings.hpp"
#include "dhtkit/peer/stats.hpp"
#include "dhtkit/protocol/codec.hpp"
#include "dhtkit/store/locked_table.hpp"

namespace dhtkit {

template <net::reactor Reactor = net::epoll_reactor, executor Executor = thread_pool,
          table Table = locked_table<std::string, std::string>, replication_policy Replication = static_backup,
          template <class, class> class Dispatch = pool_dispatch>
    requires dispatch_policy<Dispatch<Reactor, Executor>>
class peer {
public:
    peer(cluster_settings cluster, node_id id)
        : cluster_(std::move(cluster)),
          self_(cluster_.peer(id)),
          shared_(self_.shared_dir),
          replication_(cluster_.backups),
          view_(std::make_shared<cluster_view>(static_cluster_map(cluster_, replication_))),
          index_(keys_, files_, self_.id, cluster_.limits.max_value_bytes),
          client_(view_, cluster_.limits) {
        std::filesystem::create_directories(self_.data_dir);
    }
    peer(const peer&) = delete;
    peer& operator=(const peer&) = delete;
    ~peer() { stop(); }

    // Binds the peer's address and serves; catches up on the key ranges it holds from the peers
    // that are up, answering client requests with `unavailable` (clients go to the next holder)
    // until it has; then registers the files of the shared folder in the background (their
    // home peers may not be up yet).
    //
    // Why listen first: copies of new writes must reach this peer from the moment its catch-up
    // snapshot is taken, or a write made in between would be missing here. A peer asked for a
    // sync first marks this peer up (so its writes come straight here), then takes the snapshot.
    void start() {
        copier_ = std::make_unique<file_copier>(shared_, self_.id,
                                                [this](std::string_view name) { announce(name, false); }, log_);
        replicator_ = std::make_unique<replicator>(
            frame_limits(), [this](protocol::table_id t, std::string_view key) { return index_.record_of(t, key); });
        listener_ = net::tcp_listener::bind(net::endpoint::resolve(self_.host, self_.port));
        dispatch_ = std::make_unique<Dispatch<Reactor, Executor>>(
            reactor_, cluster_.pool_threads, frame_limits(), [this](connection& c) { return serve(c); }, stats_);
        spare_fd_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
        reactor_.add(listener_.fd(), net::interest::read, net::trigger::level, [this](net::readiness) { accept_all(); });
        loop_ = std::thread([this] { reactor_.run(); });
        started_ = true;
        catch_up_from_replicas();
        ready_.store(true, std::memory_order_release);
        announcer_ = std::thread([this] { announce_shared_files(); });
    }

    void stop() {
        if (!started_.exchange(false)) return;
        {
            std::lock_guard lock(stop_mutex_);
            stopping_ = true;
        }
        stop_cv_.notify_all();
        if (announcer_.joinable()) announcer_.join();
        copier_->stop();
        reactor_.stop();
        loop_.join();
        // The workers answer what the clients sent before the stop, and their writes are copied
        // to the backups before they are acknowledged: the replicator stops last.
        dispatch_->stop();
        replicator_->stop();
    }

    [[nodiscard]] const net::endpoint& local() const noexcept { return listener_.local(); }
    [[nodiscard]] const peer_settings& self() const noexcept { return self_; }
    [[nodiscard]] client& cluster_client() noexcept { return client_; }
    [[nodiscard]] const cluster_map& map() const noexcept { return view_->current(); }
    [[nodiscard]] peer_stats& stats() noexcept { return stats_; }
    // Where the peer's own messages go (a failed file copy, say); stderr by default.
    void on_log(std::function<void(const std::string&)> log) { log_ = std::move(log); }
    [[nodiscard]] std::string stats_report() const {
        const auto& c = replicator_->counters();
        auto load = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
        const auto& m = map();
        std::size_t home = 0, held = 0;
        for (std::size_t s = 0; s < slot_count; ++s) {
            auto h = m.holders(static_cast<slot_t>(s));
            if (!h.empty() && h.front() == self_.id) ++home;
            if (std::find(h.begin(), h.end(), self_.id) != h.end()) ++held;
        }
        return stats_.report(keys_.size(), files_.size()) +
               fmt::format("state={}\nnode_id={}\nepoch={}\nnodes={}\nslots_home={}\nslots_held={}\nbackups={}\n"
                           "copies_sent={}\ncopies_acked={}\ncopies_missed={}\nhints_pending={}\n"
                           "hints_replayed={}\ncaught_up_records={}\ncaught_up_from={}\n",
                           ready_.load(std::memory_order_acquire) ? "serving" : "catching_up", self_.id, m.epoch(),
                           m.nodes().size(), home, held, my_backups().size(), load(c.sent),
                           load(c.acked), load(c.missed), replicator_->hints(), load(c.replayed),
                           caught_up_records_.load(std::memory_order_relaxed),
                           caught_up_from_.load(std::memory_order_relaxed));
    }

    // Registers NAME from this peer's shared folder on NAME's home peer (and its replicas), then
    // asks this peer's backups to copy the file, so that it can still be obtained when this peer
    // is gone. `copy_to_backups` is false for a copy that a backup itself announces.
    reply announce(std::string_view name, bool copy_to_backups = true) {
        bool backups_told = false;
        return announce(name, copy_to_backups, backups_told);
    }

    reply announce(std::string_view name, bool copy_to_backups, bool& backups_told) {
        backups_told = false;
        shared_folder::refusal why{};
        auto file = shared_.open(name, &why);
        if (!file)
            return {why == shared_folder::refusal::missing ? protocol::status::not_found : protocol::status::refused,
                    {}, fmt::format("register '{}': {}", name, shared_folder::describe(why))};
        protocol::holder h{self_.id, self_.host, self_.port, file->size, file->checksum};
        {
            std::lock_guard lock(registered_mutex_);
            registered_.insert(std::string(name));
        }
        std::string value;
        protocol::append(value, h);
        auto r = route(protocol::opcode::register_file, name, value);
        if (!r.ok() || !copy_to_backups) return r;
        backups_told = true;
        for (auto b : my_backups())
            if (!client_.call(b, protocol::opcode::replicate_file, name, value).answered) backups_told = false;
        return r;
    }

    reply withdraw(std::string_view name) {
        {
            std::lock_guard lock(registered_mutex_);
            registered_.erase(std::string(name));
        }
        return route(protocol::opcode::unregister_file, name, protocol::encode_u64(self_.id));
    }

private:
    static constexpr std::size_t read_chunk = 64 * 1024;
    static constexpr std::size_t sync_flush_bytes = 1 << 20;
    static constexpr std::chrono::milliseconds write_timeout{10000};

    // A registration carries a holder record and a replicated record a version header, which must
    // fit whatever the value limit is; put checks the value limit itself.
    protocol::limits frame_limits() const noexcept {
        return protocol::frame_limits(cluster_.limits.max_key_bytes, cluster_.limits.max_value_bytes);
    }

    // This node's backups, for copies of the files it registers: the other holders of the slots
    // it is home of (the seed's "R peers after it" under static_backup).
    [[nodiscard]] std::vector<node_id> my_backups() const {
        const auto& m = map();
        for (std::size_t s = 0; s < slot_count; ++s) {
            auto h = m.holders(static_cast<slot_t>(s));
            if (!h.empty() && h.front() == self_.id) return {h.begin() + 1, h.end()};
        }
        return {};
    }

    // --- the listener thread ------------------------------------------------------------------

    void accept_all() {
        for (;;) {
            int error = 0;
            auto s = listener_.try_accept(&error);
            if (!s) {
                if (error == EMFILE || error == ENFILE) shed_one_connection();
                return;
            }
            dispatch_->adopt(std::move(*s));
        }
    }

    // Out of descriptors: accept the waiting connection on a reserved descriptor and close it at
    // once, so the client hears a close instead of the listener spinning on it.
    void shed_one_connection() {
        spare_fd_.reset();
        if (auto s = listener_.try_accept()) s->close();
        spare_fd_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    }

    // --- a worker -------------------------------------------------------------------------------

    next_step serve(connection& c) {
        if (c.awaiting.load(std::memory_order_acquire) != 0) return next_step::park;  // woken while parked
        if (c.broken) return next_step::close;
        if (!c.out.empty() && !flush(c)) return next_step::close;  // replies that waited for their copies
        bool more = false;
        // The guard: copies that finish while this batch is still being read cannot resume it.
        c.awaiting.store(1, std::memory_order_relaxed);
        bool open = receive(c);
        if (open) open = handle_frames(c, more);
        if (c.awaiting.fetch_sub(1, std::memory_order_acq_rel) != 1) {
            c.broken = !open;
            return next_step::park;
        }
        if (open && !c.out.empty()) open = flush(c);
        if (!open) return next_step::close;
        c.reader.release_if_empty();
        if (c.out.capacity() > 64 * 1024) std::string().swap(c.out);
        return more ? next_step::again : next_step::wait;
    }

    // Reads what has arrived. False when the client has gone. Bytes land in a per-worker buffer
    // and only what they hold is copied into the connection's reader, which keeps an idle
    // connection's memory small.
    bool receive(connection& c) {
        thread_local std::array<std::byte, read_chunk> scratch;
        for (;;) {
            auto in = c.stream.receive_some(scratch);
            if (!in) return false;
            c.reader.feed({reinterpret_cast<const char*>(scratch.data()), in.bytes});
            // A short read drained the socket; the level-triggered re-arm catches anything later.
            if (in.bytes < read_chunk) return true;
        }
    }

    bool handle_frames(connection& c, bool& more) {
        protocol::frame_view f;
        for (std::size_t n = 0; n < cluster_.limits.max_in_flight; ++n) {
            auto r = c.reader.next(f);
            if (r == protocol::frame_reader::result::need_more) return true;
            if (r == protocol::frame_reader::result::error) {
                stats_.count_error();
                reject(c);
                return false;
            }
            if (!handle(f, c)) return false;
        }
        more = true;
        return true;
    }

    // The stream is out of step: answer with the reason, then the caller closes.
    void reject(connection& c) {
        auto e = c.reader.last_error();
        bool size = e == protocol::header_error::key_too_large || e == protocol::header_error::value_too_large;
        protocol::header h{c.reader.error_header().op, 0, size ? protocol::status::too_large : protocol::status::bad_request,
                           c.reader.error_header().request_id, 0, 0};
        std::string why(to_string(e));
        if (size)
            why += fmt::format(" (limits: key {} bytes, value {} bytes)", cluster_.limits.max_key_bytes,
                               cluster_.limits.max_value_bytes);
        protocol::append_frame(c.out, h, {}, why);
        flush(c);
    }

    bool handle(const protocol::frame_view& f, connection& c) {
        using protocol::opcode;
        using protocol::status;
        stats_.count(f.h.op);
        protocol::header reply{f.h.op, 0, status::ok, f.h.request_id, 0, 0};
        if (index_service<Table>::handles(f.h.op)) {
            if (!ready_.load(std::memory_order_acquire)) {
                reply.code = status::unavailable;
                protocol::append_frame(c.out, reply, {}, "catching up after a restart: ask the next holder");
                return true;
            }
            thread_local std::string record;
            if (index_.handle(f, c.out, &record)) copy_to_holders(f.key, record, c);
            return true;
        }
        switch (f.h.op) {
            case opcode::ping:
                protocol::append_frame(c.out, reply, {}, fmt::format("peer {}", self_.id));
                return true;
            case opcode::stats:
                protocol::append_frame(c.out, reply, {}, stats_report());
                return true;
            case opcode::fetch:
                return serve_file(f, c);
            case opcode::replicate:
                if (!index_.apply(f.key, f.value)) {
                    stats_.count_error();
                    reply.code = status::bad_request;
                }
                protocol::append_frame(c.out, reply, {}, {});
                return true;
            case opcode::sync:
                return serve_sync(f, c);
            case opcode::replicate_file:
                reply.code = copier_->queue(f) ? status::ok : status::bad_request;
                protocol::append_frame(c.out, reply, {}, {});
                return true;
            case opcode::announce:
            case opcode::withdraw: {
                auto r = f.h.op == opcode::announce ? announce(f.key) : withdraw(f.key);
                reply.code = r.code;
                protocol::append_frame(c.out, reply, {}, r.error);
                return true;
            }
            default:
                stats_.count_error();
                reply.code = status::unknown_opcode;
                protocol::append_frame(c.out, reply, {},
                                       fmt::format("opcode {} is not an operation of this peer",
                                                   static_cast<unsigned>(f.h.op)));
                return true;
        }
    }

    bool serve_file(const protocol::frame_view& f, connection& c) {
        protocol::header reply{f.h.op, 0, protocol::status::ok, f.h.request_id, 0, 0};
        bool known;
        {
            std::lock_guard lock(registered_mutex_);
            known = registered_.contains(f.key);
        }
        shared_folder::refusal why = shared_folder::refusal::missing;
        auto file = known ? shared_.open(f.key, &why) : std::nullopt;
        if (!is_plain_file_name(f.key)) why = shared_folder::refusal::bad_name;
        if (!file) {
            stats_.count_error();
            reply.code = why == shared_folder::refusal::missing ? protocol::status::not_found : protocol::status::refused;
            protocol::append_frame(c.out, reply, f.key,
                                   known ? shared_folder::describe(why) : std::string_view("not registered by this peer"));
            return true;
        }
        protocol::append_frame(c.out, reply, f.key, protocol::encode(protocol::file_meta{file->size, file->checksum}));
        if (!flush(c)) return false;
        // Sent in slices, so that the timeout bounds a stall rather than the whole transfer.
        constexpr std::uint64_t slice = 64ull << 20;
        for (std::uint64_t at = 0; at < file->size; at += slice) {
            auto n = static_cast<std::size_t>(std::min(slice, file->size - at));
            auto r = c.stream.send_file(file->fd.get(), static_cast<off_t>(at), n, write_timeout);
            stats_.served_bytes(r.bytes);
            if (!r) return false;  // the client vanished or the file shrank: nothing more to say
        }
        return true;
    }

    bool flush(connection& c) {
        auto r = c.stream.send_all(std::as_bytes(std::span(c.out)), write_timeout);
        c.out.clear();
        return r.ok();
    }

    // --- replication ----------------------------------------------------------------------------

    // Sends a write's record to the key's other holders; the connection stays parked until each
    // has applied it or been found unreachable.
    void copy_to_holders(std::string_view key, const std::string& record, connection& c) {
        auto targets = other_holders(key);
        if (targets.empty()) return;
        auto table = protocol::record_table(record);
        auto conn = c.shared_from_this();
        // Counted before any is sent: a copy may be answered before send() returns.
        c.awaiting.fetch_add(targets.size(), std::memory_order_relaxed);
        for (const node* target : targets)
            replicator_->send(*target, *table, key, record, [conn](bool) {
                if (conn->awaiting.fetch_sub(1, std::memory_order_acq_rel) == 1) {
                    conn->awaiting.notify_all();
                    conn->resume(conn);
                }
            });
    }

    // The nodes besides this one that hold `key`, from the current map (which outlives them all).
    [[nodiscard]] std::vector<const node*> other_holders(std::string_view key) const {
        const auto& m = map();
        std::vector<const node*> out;
        for (auto id : m.holders_of_key(key))
            if (id != self_.id)
                if (const node* n = m.find(id)) out.push_back(n);
        return out;
    }

    // The same for a write made off the network (a registration of this peer's own): waits.
    void copy_and_wait(std::string_view key, const std::string& record) {
        struct waiter {
            std::mutex mutex;
            std::condition_variable done;
            std::size_t left = 0;  // guarded by mutex
        };
        auto w = std::make_shared<waiter>();
        auto targets = other_holders(key);
        w->left = targets.size();
        for (const node* target : targets)
            replicator_->send(*target, *protocol::record_table(record), key, record, [w](bool) {
                std::lock_guard lock(w->mutex);
                if (--w->left == 0) w->done.notify_all();
            });
        std::unique_lock lock(w->mutex);
        w->done.wait(lock, [&] { return w->left == 0; });  // bounded: the replicator answers every copy
    }

    // The records of the slot ranges asked for, streamed one frame each, then an end frame.
    bool serve_sync(const protocol::frame_view& f, connection& c) {
        protocol::header reply{f.h.op, 0, protocol::status::ok, f.h.request_id, 0, 0};
        auto ask = protocol::decode_sync_request(f.value);
        if (!ask || ask->ranges.empty()) {
            reply.code = protocol::status::bad_request;
            protocol::append_frame(c.out, reply, {}, "a sync request is the asker's node id, then slot ranges");
            return true;
        }
        // The asker is up again: copies go to it directly from now on, and what it missed
        // before now is in the snapshot below.
        if (ask->asker != self_.id) replicator_->peer_is_up(ask->asker);
        std::vector<bool> wanted(slot_count);
        for (auto [first, last] : ask->ranges)
            for (std::size_t s = first; s <= last && s < slot_count; ++s) wanted[s] = true;
        reply.flags = protocol::flag_more;
        // Streamed a shard at a time, so a large store never sits whole in memory; not while an
        // earlier write of this batch waits for its copies (its reply must not go out yet).
        bool open = true;
        const bool may_flush = c.awaiting.load(std::memory_order_acquire) == 1;
        index_.for_each_record(
            [&](std::string_view key, std::string_view record) {
                if (open && wanted[key_slot(key)]) protocol::append_frame(c.out, reply, key, record);
            },
            [&] {
                if (open && may_flush && c.out.size() >= sync_flush_bytes) open = flush(c);
            });
        reply.flags = 0;
        protocol::append_frame(c.out, reply, {}, {});
        return open;
    }

    void catch_up_from_replicas() {
        const auto& m = map();
        auto ranges = m.slots().ranges_held_by(self_.id);
        std::vector<node> from;  // every other holder of a slot held here
        m.slots().for_each_range([&](slot_range, std::span<const node_id> holders) {
            if (std::find(holders.begin(), holders.end(), self_.id) == holders.end()) return;
            for (auto id : holders)
                if (id != self_.id && std::none_of(from.begin(), from.end(), [&](const node& n) { return n.id == id; }))
                    if (const node* n = m.find(id)) from.push_back(*n);
        });
        if (from.empty()) return;
        auto result = catch_up(self_.id, from, ranges, frame_limits(),
                               [&](std::string_view key, std::string_view record) { index_.apply(key, record); },
                               std::chrono::milliseconds(250), std::chrono::seconds(5));
        // Atomics: stats are served while the catch-up runs.
        caught_up_records_.store(result.records, std::memory_order_relaxed);
        caught_up_from_.store(result.peers_answered, std::memory_order_relaxed);
        std::string missing;
        for (const auto& why : result.unreachable) missing += fmt::format("; not from {}", why);
        log_(fmt::format("caught up: {} records from {} peers{}", result.records, result.peers_answered, missing));
    }

    // A registry operation for NAME, applied here (and copied to its other holders) when this
    // peer is its home, sent to the first holder that answers otherwise.
    reply route(protocol::opcode op, std::string_view name, std::string_view value) {
        if (client_.home_of(name) != self_.id) return client_.call_key(op, name, value);
        protocol::frame_view f{{op, 0, protocol::status::ok, 0, 0, 0}, name, value};
        std::string out, record;
        if (index_.handle(f, out, &record)) copy_and_wait(name, record);
        protocol::frame_reader reader(frame_limits());
        reader.feed(out);
        protocol::frame_view answer;
        reader.next(answer);
        return {answer.h.code, std::string(answer.value),
                answer.h.code == protocol::status::ok ? "" : std::string(to_string(answer.h.code))};
    }

    // Registers every file of the shared folder and asks the backups to copy it, retrying while
    // the name's holders or this peer's backups are not up yet.
    void announce_shared_files() {
        std::vector<std::string> pending;
        try {
            pending = shared_.list();
        } catch (const std::exception&) {
            return;
        }
        auto wait = std::chrono::milliseconds(100);
        for (;;) {
            std::erase_if(pending, [&](const std::string& name) {
                bool backups_told = false;
                auto r = announce(name, true, backups_told);
                return (r.ok() && backups_told) || r.code == protocol::status::not_found ||
                       r.code == protocol::status::refused;
            });
            std::unique_lock lock(stop_mutex_);
            if (pending.empty() || stop_cv_.wait_for(lock, wait, [&] { return stopping_; })) return;
            wait = std::min(wait * 2, std::chrono::milliseconds(5000));
        }
    }

    cluster_settings cluster_;
    peer_settings self_;
    shared_folder shared_;
    Replication replication_;
    std::shared_ptr<cluster_view> view_;
    Table keys_;
    Table files_;
    index_service<Table> index_;
    client client_;
    peer_stats stats_;
    std::unique_ptr<replicator> replicator_;
    std::unique_ptr<file_copier> copier_;
    std::atomic<std::size_t> caught_up_records_{0};
    std::atomic<std::size_t> caught_up_from_{0};
    Reactor reactor_;
    net::tcp_listener listener_;
    std::unique_ptr<Dispatch<Reactor, Executor>> dispatch_;
    net::unique_fd spare_fd_;
    std::thread loop_;
    std::thread announcer_;
    std::atomic<bool> started_{false};
    std::atomic<bool> ready_{false};  // caught up: serves client requests

    std::mutex stop_mutex_;
    std::condition_variable stop_cv_;
    bool stopping_ = false;  // guarded by stop_mutex_
    std::function<void(const std::string&)> log_ = [id = self_.id](const std::string& line) {
        std::fprintf(stderr, "dhtkit-peer %llu: %s\n", static_cast<unsigned long long>(id), line.c_str());
    };

    std::mutex registered_mutex_;
    std::set<std::string, std::less<>> registered_;  // names this peer announced; guarded by registered_mutex_
};

}  // namespace dhtkit
