#pragma once
// The file service: what a peer does as a file server and as the keeper of its shared folder.
//   fetch           streams a registered file to a client (an output_source: sent as the socket
//                   takes it, on no loop's time; the file is opened and checked off the loop).
//                   A file whose size or mtime changed since this node registered it is refused
//                   (its entry promises other bytes) and registered again as it is now.
//   announce        registers a file of the shared folder on its name's home, and asks this
//                   node's backups to copy it; withdraw takes this node's copy off the registry
//   replicate_file  a node whose backup this is asks it to copy a file (file_copier)
// announce and withdraw wait on other nodes, so they run on the service's own threads while the
// connection holds their reply. At start the service registers every file already in the folder.

#include <sys/types.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "dhtkit/cluster/cluster_map.hpp"
#include "dhtkit/concurrency/thread_pool.hpp"
#include "dhtkit/log/logger.hpp"
#include "dhtkit/peer/client.hpp"
#include "dhtkit/peer/connection.hpp"
#include "dhtkit/peer/file_copier.hpp"
#include "dhtkit/peer/reply.hpp"
#include "dhtkit/peer/settings.hpp"
#include "dhtkit/peer/shared_folder.hpp"
#include "dhtkit/peer/stats.hpp"
#include "dhtkit/protocol/messages.hpp"

namespace dhtkit {

class file_service {
public:
    using log_fn = logger;
    // A registry write on this node, for names whose home it is (the key service's write_here).
    using local_write_fn = std::function<reply(protocol::opcode, std::string_view, std::string_view)>;

    file_service(const peer_settings& self, const cluster_view& view, client& cluster, local_write_fn write_here,
                 peer_stats& stats)
        : self_(self), shared_(self.shared_dir), view_(view), client_(cluster), write_here_(std::move(write_here)),
          stats_(stats) {}
    file_service(const file_service&) = delete;
    file_service& operator=(const file_service&) = delete;
    ~file_service() { stop(); }

    [[nodiscard]] static bool handles(protocol::opcode op) noexcept {
        using protocol::opcode;
        return op == opcode::fetch || op == opcode::announce || op == opcode::withdraw || op == opcode::replicate_file;
    }

    // Before the peer listens: requests may come as soon as it does.
    void start(log_fn log) {
        log_ = std::move(log);
        copier_ = std::make_unique<file_copier>(shared_, self_.id, [this](std::string_view name) { announce(name, false); },
                                                log_, client_.hello());
        workers_ = std::make_unique<thread_pool>(2);
    }

    // Once the peer serves: registers every file already in the shared folder, in the background.
    void announce_folder() {
        announcer_ = std::thread([this] { announce_shared_files(); });
    }

    void stop() {
        {
            std::lock_guard lock(stop_mutex_);
            if (stopping_ || !workers_) return;
            stopping_ = true;
        }
        stop_cv_.notify_all();
        if (announcer_.joinable()) announcer_.join();
        copier_->stop();
        workers_->stop();
    }

    // Answers one request on `c`. fetch ends the batch: the file streams after its reply.
    void handle(const protocol::frame_view& f, connection& c) {
        using protocol::opcode;
        protocol::header reply_header{f.h.op, 0, protocol::status::ok, f.h.request_id, 0, 0};
        if (f.h.op == opcode::replicate_file) {
            if (!copier_->queue(f)) {
                stats_.count_error();
                reply_header.code = protocol::status::bad_request;
            }
            c.answer(reply_header, {});
            return;
        }
        auto held = c.hold();
        auto conn = c.shared_from_this();
        auto job = [this, held, conn, reply_header, op = f.h.op, name = std::string(f.key)]() mutable {
            if (op == opcode::fetch) {
                open_for_fetch(name, reply_header, *held);
            } else {
                auto r = op == opcode::announce ? announce(name) : withdraw(name);
                reply_header.code = r.code;
                held->answer.emplace(reply_header, r.error);
            }
            conn->release();
        };
        if (!workers_->post(job)) {  // stopping
            reply_header.code = protocol::status::unavailable;
            held->answer.emplace(reply_header, "the peer is stopping");
            c.release();
        }
    }

    // Registers NAME from this node's shared folder on NAME's home (and its holders), then asks
    // this node's backups to copy the file, so that it can still be obtained when this node is
    // gone. `copy_to_backups` is false for a copy that a backup itself announces. Waits on other
    // nodes: not for an event loop.
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
            registered_.insert_or_assign(std::string(name), file->stamp);
        }
        std::string value;
        protocol::append(value, h);
        auto r = route(protocol::opcode::register_file, name, value);
        if (!r.ok() || !copy_to_backups) return r;
        backups_told = true;
        for (auto b : backups(name))
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

    // Where copies of file NAME go: under a live map, the holders of NAME's slot (where its
    // registry entry lives), so that the copies follow the slot as keys do; under a static one,
    // this node's backups (below).
    [[nodiscard]] std::vector<node_id> backups(std::string_view name) const {
        const auto& m = view_.current();
        if (!m.live()) return backups();
        std::vector<node_id> out;
        for (auto id : m.holders_of_key(name))
            if (id != self_.id) out.push_back(id);
        return out;
    }

    // A live map changed: every file this node holds is registered again and offered to the
    // holders of its name's slot now, which copy what they lack (a copy already there is only
    // registered). On the peer's healer thread.
    void recopy() {
        std::vector<std::string> names;
        {
            std::lock_guard lock(registered_mutex_);
            for (const auto& [name, _] : registered_) names.push_back(name);
        }
        for (const auto& name : names) {
            {
                std::lock_guard lock(stop_mutex_);
                if (stopping_) return;
            }
            announce(name);
        }
    }

    // This node's backups, for copies of the files it registers: the other holders of the slots
    // it is home of (the seed's "R peers after it" under static_backup).
    [[nodiscard]] std::vector<node_id> backups() const {
        const auto& m = view_.current();
        for (std::size_t s = 0; s < slot_count; ++s) {
            auto h = m.holders(static_cast<slot_t>(s));
            if (!h.empty() && h.front() == self_.id) return {h.begin() + 1, h.end()};
        }
        return {};
    }

private:
    // A file's bytes, as the socket takes them.
    class file_stream : public output_source {
    public:
        file_stream(net::unique_fd fd, std::uint64_t size, peer_stats& stats)
            : fd_(std::move(fd)), left_(size), stats_(stats) {}
        progress pump(net::tcp_stream& s, std::string&) override {
            while (left_ > 0) {
                auto r = s.send_file_some(fd_.get(), at_, static_cast<std::size_t>(std::min<std::uint64_t>(left_, 1 << 20)));
                stats_.served_bytes(r.bytes);
                sent_directly_ += r.bytes;
                if (!r) return progress::failed;  // the client vanished or the file shrank: nothing more to say
                if (r.bytes == 0) return progress::more;
                at_ += static_cast<off_t>(r.bytes);
                left_ -= r.bytes;
            }
            return progress::done;
        }

    private:
        net::unique_fd fd_;
        off_t at_ = 0;
        std::uint64_t left_;
        peer_stats& stats_;
    };

    // On a service thread: opens NAME (its checksum may need a read of the whole file) and fills
    // the reply, with the file to stream after it.
    void open_for_fetch(const std::string& name, protocol::header reply_header, held_reply& out) {
        auto named = [](held_reply& r, const protocol::header& h, const std::string& file, std::string_view value) {
            r.answer.emplace(h, value).key = file;
        };
        std::optional<file_stamp> registered;
        {
            std::lock_guard lock(registered_mutex_);
            if (auto it = registered_.find(name); it != registered_.end()) registered = it->second;
        }
        const bool known = registered.has_value();
        shared_folder::refusal why = shared_folder::refusal::missing;
        auto file = known ? shared_.open(name, &why) : std::nullopt;
        if (auto bad = shared_folder::check_name(name); bad != shared_folder::refusal::none) why = bad;
        if (!file) {
            stats_.count_error();
            reply_header.code = why == shared_folder::refusal::missing ? protocol::status::not_found : protocol::status::refused;
            named(out, reply_header, name, known ? shared_folder::describe(why) : std::string_view("not registered by this peer"));
            return;
        }
        if (file->stamp != *registered) {
            // Its registry entry promises other bytes: refused here (the client tries the next
            // holder), and registered again with what the file holds now.
            stats_.count_error();
            reply_header.code = protocol::status::unavailable;
            named(out, reply_header, name, fmt::format("'{}' changed on this peer since it was registered (now {} bytes); "
                                               "registering it again",
                                               name, file->size));
            (void)workers_->post([this, name] {
                if (auto r = announce(name); !r.ok()) log_.warning(fmt::format("registering changed '{}' again: {}", name, r.error));
            });
            return;
        }
        named(out, reply_header, name, protocol::encode(protocol::file_meta{file->size, file->checksum, file->mode}));
        out.then = std::make_unique<file_stream>(std::move(file->fd), file->size, stats_);
    }

    // A registry operation for NAME: applied here (and copied to its other holders) when this
    // node is its home, sent to the first holder that answers otherwise.
    reply route(protocol::opcode op, std::string_view name, std::string_view value) {
        if (client_.home_of(name) != self_.id) return client_.call_key(op, name, value);
        return write_here_(op, name, value);
    }

    // Registers every file of the shared folder and asks the backups to copy it, retrying while
    // the name's holders or this node's backups are not up yet.
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

    const peer_settings& self_;
    shared_folder shared_;
    const cluster_view& view_;
    client& client_;
    local_write_fn write_here_;
    peer_stats& stats_;
    log_fn log_;
    std::unique_ptr<file_copier> copier_;
    std::unique_ptr<thread_pool> workers_;
    std::thread announcer_;

    std::mutex stop_mutex_;
    std::condition_variable stop_cv_;
    bool stopping_ = false;  // guarded by stop_mutex_

    std::mutex registered_mutex_;
    // The files this node announced, as they were then; guarded by registered_mutex_.
    std::map<std::string, file_stamp, std::less<>> registered_;
};

}  // namespace dhtkit
