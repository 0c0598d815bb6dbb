#pragma once
// The file copies a backup keeps for the nodes whose backup it is: when a peer registers a
// file, it asks its backups to copy it (a `replicate_file` request naming the holder). A backup
// queues the request and a thread of its own fetches the file into the shared folder, verified,
// then registers this peer as another holder, so the file can still be obtained when the
// original holder is gone. A different file of the same name already here is kept.

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include <fmt/format.h>

#include "dhtkit/log/logger.hpp"
#include "dhtkit/peer/file_download.hpp"
#include "dhtkit/peer/shared_folder.hpp"
#include "dhtkit/protocol/codec.hpp"
#include "dhtkit/protocol/messages.hpp"

namespace dhtkit {

class file_copier {
public:
    using announce_fn = std::function<void(std::string_view name)>;
    using log_fn = logger;

    // `announce` registers a copy that landed; `log` hears of copies that failed; `hello` is what
    // a download says first.
    file_copier(shared_folder& shared, std::uint64_t self, announce_fn announce, log_fn log,
                protocol::hello_request hello = {})
        : shared_(shared), self_(self), announce_(std::move(announce)), log_(std::move(log)), hello_(std::move(hello)) {
        thread_ = std::thread([this] { run(); });
    }
    file_copier(const file_copier&) = delete;
    file_copier& operator=(const file_copier&) = delete;
    ~file_copier() { stop(); }

    // Takes a replicate_file request: key NAME, value the holder to copy from. False when it is
    // malformed (not one holder, or not a plain file name).
    bool queue(const protocol::frame_view& f) {
        auto from = protocol::decode_holders(f.value);
        if (!from || from->size() != 1 || !is_plain_file_name(f.key)) return false;
        {
            std::lock_guard lock(mutex_);
            if (jobs_.size() < max_queued) jobs_.push_back({std::string(f.key), from->front()});
        }
        wake_.notify_one();
        return true;
    }

    // Finishes the copy under way (bounded by the download's timeouts) and drops the rest.
    void stop() {
        {
            std::lock_guard lock(mutex_);
            if (stopping_) return;
            stopping_ = true;
        }
        wake_.notify_one();
        thread_.join();
    }

private:
    static constexpr std::size_t max_queued = 4096;

    struct job {
        std::string name;
        protocol::holder from;
    };

    void run() {
        for (;;) {
            job next;
            {
                std::unique_lock lock(mutex_);
                wake_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
                if (stopping_) return;
                next = std::move(jobs_.front());
                jobs_.pop_front();
            }
            copy(next);
        }
    }

    void copy(const job& j) {
        if (j.from.peer_id == self_) return;
        if (auto have = shared_.open(j.name)) {
            if (have->checksum != j.from.checksum) {
                log_.warning(fmt::format("not copying '{}' from peer {}: a different file of that name is here", j.name,
                                 j.from.peer_id));
                return;
            }
        } else {
            auto r = download_file(j.from, j.name, shared_.root() / j.name, std::chrono::milliseconds(250),
                                   std::chrono::seconds(5), {}, hello_);
            if (!r.ok()) {
                log_.warning(fmt::format("copying '{}' from peer {} failed: {}", j.name, j.from.peer_id, r.error));
                return;
            }
        }
        announce_(j.name);
    }

    shared_folder& shared_;
    std::uint64_t self_;
    announce_fn announce_;
    log_fn log_;
    protocol::hello_request hello_;

    std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<job> jobs_;   // guarded by mutex_
    bool stopping_ = false;  // guarded by mutex_
    std::thread thread_;
};

}  // namespace dhtkit
