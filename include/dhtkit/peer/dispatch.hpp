#pragma once
// The dispatch policy: which thread serves a connection when it has input. The peer's listener
// thread accepts connections and hands each to the dispatcher (`adopt`); the dispatcher calls the
// peer's serve function on some worker and acts on its answer.
//
//   pool_dispatch    the seed's model: the listener's reactor watches every connection one-shot
//                    and hands each readable one to the thread pool, which re-arms it when done.
//                    A thread hand-off per request.
//   loop_dispatch    one reactor per worker (memcached, muduo): a connection is handed over once,
//                    at accept, and its worker's loop serves it from then on. No hand-off per
//                    request; a busy connection cannot move to an idle worker.

#include <poll.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "dhtkit/concurrency/thread_pool.hpp"
#include "dhtkit/net/reactor.hpp"
#include "dhtkit/net/socket.hpp"
#include "dhtkit/peer/stats.hpp"
#include "dhtkit/protocol/codec.hpp"

namespace dhtkit {

// How long a closing peer waits for its clients to close their side of the connections.
inline constexpr std::chrono::milliseconds linger{500};

struct connection;
using connection_ptr = std::shared_ptr<connection>;

struct connection : std::enable_shared_from_this<connection> {
    connection(net::tcp_stream s, protocol::limits lim) : stream(std::move(s)), reader(lim) {}
    net::tcp_stream stream;
    protocol::frame_reader reader;
    std::string out;
    // Replies held back until something finishes elsewhere (the copies of a write reaching the
    // backups). While it is above zero the connection is parked: nothing is read or sent.
    std::atomic<std::size_t> awaiting{0};
    bool broken = false;  // the protocol broke while parked: close once resumed
    // Set by the dispatcher: serve this parked connection again, on a thread of its choosing.
    // Whoever brings `awaiting` to zero also calls awaiting.notify_all(), for a dispatcher that
    // is stopping and waits on it instead.
    std::function<void(const connection_ptr&)> resume;
    bool parked = false;  // the dispatcher's own note, touched only by the thread serving it
};

// What serving a connection's input leaves to do.
enum class next_step {
    wait,   // everything buffered was answered: wait for more input
    again,  // a batch was answered and more is buffered: serve again after others had a turn
    close,  // the client went away or broke the protocol
    park,   // replies wait for work elsewhere; `resume` is called when it is done
};
using serve_fn = std::function<next_step(connection&)>;

template <class D>
concept dispatch_policy = requires(D& d, net::tcp_stream s) {
    d.adopt(std::move(s));
    d.stop();
};

namespace detail {

// The connections a dispatcher has adopted, so that stop() can close them all.
class connection_set {
public:
    explicit connection_set(peer_stats& stats) : stats_(stats) {}
    void add(const connection_ptr& c) {
        std::lock_guard lock(mutex_);
        open_[c->stream.fd()] = c;
        stats_.opened();
    }
    void erase(const connection_ptr& c) {
        std::lock_guard lock(mutex_);
        if (open_.erase(c->stream.fd()) > 0) stats_.closed();
    }
    void clear() {
        std::lock_guard lock(mutex_);
        open_.clear();
    }

    // The graceful end, once no worker serves any more: each connection gets its buffered
    // requests answered, then a FIN; the client has up to `linger` to close its side (its unread
    // bytes would turn our close into a reset), then everything is closed.
    void finish_all(const serve_fn& serve, std::chrono::milliseconds linger) {
        std::unordered_map<int, connection_ptr> all;
        {
            std::lock_guard lock(mutex_);
            all.swap(open_);
        }
        std::vector<pollfd> waiting;
        for (auto& [fd, c] : all) {
            for (int round = 0; round < 64; ++round) {
                wait_unparked(*c);  // bounded: whatever a connection waits for always finishes
                if (c->broken) break;
                auto step = serve(*c);
                if (step != next_step::again && step != next_step::park) break;
            }
            wait_unparked(*c);
            if (!c->out.empty()) (void)c->stream.send_all(std::as_bytes(std::span(c->out)), linger);
            c->stream.shutdown_write();
            waiting.push_back({fd, POLLIN, 0});
        }
        auto until = std::chrono::steady_clock::now() + linger;
        while (!waiting.empty()) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
            if (left.count() <= 0 || ::poll(waiting.data(), waiting.size(), static_cast<int>(left.count())) <= 0) break;
            std::erase_if(waiting, [&](pollfd& p) {
                if (!p.revents) return false;
                std::array<std::byte, 4096> sink;
                auto& s = all.at(p.fd)->stream;
                for (;;) {
                    auto in = s.receive_some(sink);
                    if (!in) return true;             // the client closed: done with it
                    if (in.bytes == 0) return false;  // drained for now
                }
            });
        }
        // Closed here, not when the last reference goes: a stopped loop still holds its handlers.
        for (auto& [fd, c] : all) {
            c->stream.close();
            stats_.closed();
        }
    }

private:
    static void wait_unparked(connection& c) {
        for (auto n = c.awaiting.load(std::memory_order_acquire); n != 0; n = c.awaiting.load(std::memory_order_acquire))
            c.awaiting.wait(n, std::memory_order_acquire);
    }

    peer_stats& stats_;
    std::mutex mutex_;
    std::unordered_map<int, connection_ptr> open_;  // guarded by mutex_
};

}  // namespace detail

template <net::reactor Reactor, executor Executor>
class pool_dispatch {
public:
    pool_dispatch(Reactor& listener_loop, std::size_t workers, protocol::limits lim, serve_fn serve, peer_stats& stats)
        : loop_(listener_loop), pool_(workers), limits_(lim), serve_(std::move(serve)), open_(stats) {}

    // On the listener thread.
    void adopt(net::tcp_stream s) {
        auto conn = std::make_shared<connection>(std::move(s), limits_);
        conn->resume = [this](const connection_ptr& c) { hand_off(c); };
        open_.add(conn);
        loop_.add(conn->stream.fd(), net::interest::read, net::trigger::oneshot, [this, conn](net::readiness) { hand_off(conn); });
    }

    // After the listener loop has stopped: finishes the requests in flight, then closes all.
    void stop() {
        pool_.stop();
        open_.finish_all(serve_, linger);
    }

private:
    // A pool that refuses work is stopping: the connection is left to stop(), which answers what
    // it sent and closes it gracefully, instead of closing it here under the client's feet.
    void hand_off(const connection_ptr& conn) { (void)pool_.post([this, conn] { serve(conn); }); }

    void serve(const connection_ptr& conn) {
        switch (serve_(*conn)) {
            case next_step::wait:
                loop_.modify(conn->stream.fd(), net::interest::read, net::trigger::oneshot);
                return;
            case next_step::again:
                return hand_off(conn);
            case next_step::close:
                return close(conn);
            case next_step::park:
                return;  // one-shot and not re-armed: nothing wakes it but resume
        }
    }

    void close(const connection_ptr& conn) {
        loop_.remove(conn->stream.fd());
        open_.erase(conn);
    }

    Reactor& loop_;
    Executor pool_;
    protocol::limits limits_;
    serve_fn serve_;
    detail::connection_set open_;
};

template <net::reactor Reactor, executor>
class loop_dispatch {
public:
    loop_dispatch(Reactor&, std::size_t workers, protocol::limits lim, serve_fn serve, peer_stats& stats)
        : limits_(lim), serve_(std::move(serve)), open_(stats) {
        for (std::size_t i = 0; i < workers; ++i) workers_.push_back(std::make_unique<worker>());
        for (auto& w : workers_) w->thread = std::thread([&loop = w->loop] { loop.run(); });
    }
    ~loop_dispatch() { stop(); }

    // On the listener thread: the connection goes to the next worker, for good.
    void adopt(net::tcp_stream s) {
        auto conn = std::make_shared<connection>(std::move(s), limits_);
        open_.add(conn);
        worker& w = *workers_[next_++ % workers_.size()];
        conn->resume = [this, &w](const connection_ptr& c) {
            w.loop.post([this, &w, c] {
                if (!c->parked) return;
                c->parked = false;
                w.loop.modify(c->stream.fd(), net::interest::read, net::trigger::level);
                serve(w, c);
            });
        };
        w.loop.post([this, &w, conn] {
            w.loop.add(conn->stream.fd(), net::interest::read, net::trigger::level,
                       [this, &w, conn](net::readiness) { serve(w, conn); });
        });
    }

    // Each loop finishes the round it is in (posted work included), then all connections close.
    void stop() {
        if (stopped_.exchange(true)) return;
        for (auto& w : workers_) w->loop.stop();
        for (auto& w : workers_) w->thread.join();
        open_.finish_all(serve_, linger);
    }

private:
    struct worker {
        Reactor loop;
        std::thread thread;
    };

    void serve(worker& w, const connection_ptr& conn) {
        switch (serve_(*conn)) {
            case next_step::wait:
                return;  // level-triggered: the loop calls again when more arrives
            case next_step::again:
                w.loop.post([this, &w, conn] {
                    if (conn->stream.valid()) serve(w, conn);
                });
                return;
            case next_step::close:
                w.loop.remove(conn->stream.fd());
                open_.erase(conn);
                return;
            case next_step::park:
                // One-shot while parked: input or a hang-up calls serve at most once, which parks
                // again, instead of a level trigger calling it in a loop.
                if (!conn->parked) w.loop.modify(conn->stream.fd(), net::interest::read, net::trigger::oneshot);
                conn->parked = true;
                return;
        }
    }

    protocol::limits limits_;
    serve_fn serve_;
    detail::connection_set open_;
    std::vector<std::unique_ptr<worker>> workers_;
    std::size_t next_ = 0;  // only the listener thread adopts
    std::atomic<bool> stopped_{false};
};

}  // namespace dhtkit
