#pragma once
// dhtkit::peer composes the policies into one peer of the cluster: an index server (keys and the
// file registry), a file server, and a client of the other peers. It does little else.
//
// Threading: one listener thread runs the reactor and accepts connections; the dispatch policy
// decides which worker serves a connection's requests (dispatch.hpp: the seed's thread pool, or a
// loop per worker). A worker reads the requests, runs them against the shared tables and replies
// on the same connection. Connections stay open between requests and cost no thread while idle.

#include <sys/resource.h>

#include <array>
#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>

#include <fmt/format.h>

#include "dhtkit/app/config.hpp"
#include "dhtkit/cluster/placement.hpp"
#include "dhtkit/cluster/replication.hpp"
#include "dhtkit/concurrency/thread_pool.hpp"
#include "dhtkit/net/reactor.hpp"
#include "dhtkit/net/socket.hpp"
#include "dhtkit/peer/client.hpp"
#include "dhtkit/peer/dispatch.hpp"
#include "dhtkit/peer/index_service.hpp"
#include "dhtkit/peer/shared_folder.hpp"
#include "dhtkit/peer/stats.hpp"
#include "dhtkit/protocol/codec.hpp"
#include "dhtkit/store/locked_table.hpp"

namespace dhtkit {

template <net::reactor Reactor = net::epoll_reactor, executor Executor = thread_pool,
          table Table = locked_table<std::string, std::string>, placement Placement = modulo_placement,
          replication_policy Replication = no_replication,
          template <class, class> class Dispatch = pool_dispatch>
    requires dispatch_policy<Dispatch<Reactor, Executor>>
class peer {
public:
    peer(cluster_config cluster, unsigned id)
        : cluster_(std::move(cluster)),
          self_(cluster_.peer(id)),
          self_index_(cluster_.index_of(id)),
          shared_(self_.shared_dir),
          index_(keys_, files_),
          client_(cluster_) {
        std::filesystem::create_directories(self_.data_dir);
    }
    peer(const peer&) = delete;
    peer& operator=(const peer&) = delete;
    ~peer() { stop(); }

    // Binds the peer's address and starts serving; then registers the files of the shared folder
    // in the background (their home peers may not be up yet).
    void start() {
        listener_ = net::tcp_listener::bind(net::endpoint::resolve(self_.host, self_.port));
        dispatch_ = std::make_unique<Dispatch<Reactor, Executor>>(
            reactor_, cluster_.pool_threads, frame_limits(), [this](connection& c) { return serve(c); }, stats_);
        spare_fd_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
        reactor_.add(listener_.fd(), net::interest::read, net::trigger::level, [this](net::readiness) { accept_all(); });
        loop_ = std::thread([this] { reactor_.run(); });
        announcer_ = std::thread([this] { announce_shared_files(); });
        started_ = true;
    }

    void stop() {
        if (!started_.exchange(false)) return;
        {
            std::lock_guard lock(stop_mutex_);
            stopping_ = true;
        }
        stop_cv_.notify_all();
        announcer_.join();
        reactor_.stop();
        loop_.join();
        dispatch_->stop();
    }

    [[nodiscard]] const net::endpoint& local() const noexcept { return listener_.local(); }
    [[nodiscard]] const peer_config& self() const noexcept { return self_; }
    [[nodiscard]] client<Placement>& cluster_client() noexcept { return client_; }
    [[nodiscard]] std::string stats_report() const { return stats_.report(keys_.size(), files_.size()); }

    // Registers NAME from this peer's shared folder on NAME's home peer.
    reply announce(std::string_view name) {
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
        return route(protocol::opcode::register_file, name, value);
    }

    reply withdraw(std::string_view name) {
        {
            std::lock_guard lock(registered_mutex_);
            registered_.erase(std::string(name));
        }
        return route(protocol::opcode::unregister_file, name, protocol::encode_u32(self_.id));
    }

private:
    static constexpr std::size_t read_chunk = 64 * 1024;
    static constexpr std::chrono::milliseconds write_timeout{10000};

    protocol::limits frame_limits() const noexcept {
        // A registration carries a holder record, which must fit whatever the value limit is.
        return {cluster_.limits.max_key_bytes, std::max<std::size_t>(cluster_.limits.max_value_bytes, 4096)};
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
        bool more = false;
        bool open = receive(c);
        if (open) open = handle_frames(c, more);
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
            index_.handle(f, c.out);
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

    // A registry operation for NAME, applied here when this peer is its home, sent there otherwise.
    reply route(protocol::opcode op, std::string_view name, std::string_view value) {
        if (client_.home_of(name) != self_index_) return client_.call(client_.home_of(name), op, name, value);
        protocol::frame_view f{{op, 0, protocol::status::ok, 0, 0, 0}, name, value};
        std::string out;
        index_.handle(f, out);
        protocol::frame_reader reader(frame_limits());
        reader.feed(out);
        protocol::frame_view answer;
        reader.next(answer);
        return {answer.h.code, std::string(answer.value),
                answer.h.code == protocol::status::ok ? "" : std::string(to_string(answer.h.code))};
    }

    // Registers every file of the shared folder, retrying those whose home peer is not up yet.
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
                auto r = announce(name);
                return r.ok() || r.code == protocol::status::not_found || r.code == protocol::status::refused;
            });
            std::unique_lock lock(stop_mutex_);
            if (pending.empty() || stop_cv_.wait_for(lock, wait, [&] { return stopping_; })) return;
            wait = std::min(wait * 2, std::chrono::milliseconds(5000));
        }
    }

    cluster_config cluster_;
    peer_config self_;
    std::size_t self_index_;
    shared_folder shared_;
    Table keys_;
    Table files_;
    index_service<Table> index_;
    client<Placement> client_;
    peer_stats stats_;

    Reactor reactor_;
    net::tcp_listener listener_;
    std::unique_ptr<Dispatch<Reactor, Executor>> dispatch_;
    net::unique_fd spare_fd_;
    std::thread loop_;
    std::thread announcer_;
    std::atomic<bool> started_{false};

    std::mutex stop_mutex_;
    std::condition_variable stop_cv_;
    bool stopping_ = false;  // guarded by stop_mutex_

    std::mutex registered_mutex_;
    std::set<std::string, std::less<>> registered_;  // names this peer announced; guarded by registered_mutex_
};

}  // namespace dhtkit
