#pragma once
// The lease keeper: renews this node's read leases (cluster/leases.hpp) from every node it shares
// slots with, one thread and one connection per such node, every renew_every.
//
// When a lease is not renewed in time — this process was paused, or the other node is dead, hung
// or cut off — the reads of the slots shared with that node are refused until this node has
// caught up on those slots from their holders (`catch_up`, which blocks this thread until done):
// whatever the grantor acknowledged without this node while the lease was out is then here,
// whether the grantor answers again, was restarted meanwhile, or cannot be reached. The lease is
// then excused until the next grant. A grantor that says this node is "behind" (it acknowledged
// writes without it) gets the same. While an excused grantor stays out of reach, what it could
// still acknowledge without this node is a partition's business (see docs/replication.md).

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#include "dhtkit/cluster/cluster_map.hpp"
#include "dhtkit/cluster/handshake.hpp"
#include "dhtkit/cluster/leases.hpp"
#include "dhtkit/protocol/messages.hpp"
#include "dhtkit/protocol/rpc.hpp"

namespace dhtkit {

class lease_keeper {
public:
    using clock = std::chrono::steady_clock;
    // Catches up on the slots this node shares with node `id`, from their holders; blocks.
    using catch_up_fn = std::function<void(node_id)>;

    lease_keeper(node_id self, lease_holdings& held, protocol::limits lim, protocol::hello_request hello,
                 lease_options opt, catch_up_fn catch_up)
        : self_(self), held_(held), limits_(lim), hello_(std::move(hello)), options_(opt),
          catch_up_(std::move(catch_up)) {}
    lease_keeper(const lease_keeper&) = delete;
    lease_keeper& operator=(const lease_keeper&) = delete;
    ~lease_keeper() { stop(); }

    // Starts renewing from each of `grantors` (the other holders of this node's slots).
    void start(const std::vector<node>& grantors) {
        std::lock_guard lock(mutex_);
        if (stopping_ || !threads_.empty()) return;
        for (const auto& n : grantors) threads_.emplace_back([this, n] { run(n); });
    }

    void stop() {
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        wake_.notify_all();
        for (auto& t : threads_)
            if (t.joinable()) t.join();
        threads_.clear();
    }

private:
    enum class answer { granted, behind, failed };

    void run(const node& from) {
        protocol::rpc_stream rpc;
        std::uint64_t next_id = 1;
        for (;;) {
            const auto asked_at = clock::now();
            const bool lapsed = held_.lapsed(from.id, asked_at);
            std::chrono::milliseconds term{};
            switch (ask(rpc, from, next_id, term)) {
                case answer::granted:
                    if (!lapsed) {
                        held_.renewed(from.id, asked_at, term);
                        break;
                    }
                    catch_up_(from.id);  // the grant is older than the catch-up: the next one counts
                    held_.excuse(from.id);
                    break;
                case answer::behind:
                    held_.revoke(from.id);
                    catch_up_(from.id);  // its stream clears "behind" there: the next ask is granted
                    held_.excuse(from.id);
                    continue;
                case answer::failed:
                    if (lapsed) {
                        catch_up_(from.id);
                        held_.excuse(from.id);
                    }
                    break;
            }
            std::unique_lock lock(mutex_);
            if (wake_.wait_until(lock, asked_at + options_.renew_every, [&] { return stopping_; })) return;
        }
    }

    answer ask(protocol::rpc_stream& rpc, const node& from, std::uint64_t& next_id, std::chrono::milliseconds& term) {
        {
            std::lock_guard lock(mutex_);
            if (stopping_) return answer::failed;
        }
        try {
            if (!rpc.valid()) {
                rpc = protocol::rpc_stream::connect(from.host, from.port, limits_, options_.request_timeout);
                if (!say_hello(rpc, hello_, options_.request_timeout).agreed()) throw std::runtime_error("hello refused");
                next_id = 1;
            }
        } catch (const std::exception&) {
            rpc.close();
            return answer::failed;
        }
        const auto id = next_id++;
        protocol::frame_view f;
        if (rpc.send({protocol::opcode::lease, 0, protocol::status::ok, id, 0, 0}, {}, protocol::encode_u64(self_),
                     options_.request_timeout) != protocol::rpc_status::ok ||
            rpc.receive(f, options_.request_timeout) != protocol::rpc_status::ok || f.h.request_id != id) {
            rpc.close();  // a late answer would be read as the next one's
            return answer::failed;
        }
        if (f.h.code == protocol::status::unavailable) return answer::behind;
        auto ms = protocol::decode_u64(f.value);
        if (f.h.code != protocol::status::ok || !ms) return answer::failed;
        term = std::min(std::chrono::milliseconds(*ms), options_.term);  // never trust a longer one
        return answer::granted;
    }

    node_id self_;
    lease_holdings& held_;
    protocol::limits limits_;
    protocol::hello_request hello_;
    lease_options options_;
    catch_up_fn catch_up_;

    std::mutex mutex_;
    std::condition_variable wake_;
    bool stopping_ = false;  // guarded by mutex_
    std::vector<std::thread> threads_;
};

}  // namespace dhtkit
