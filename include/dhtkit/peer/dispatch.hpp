#pragma once
// The dispatch policy: which thread serves a connection when it has input or room for output. The
// peer's listener thread accepts connections and hands each to the dispatcher with the pump of its
// front (`adopt`, peer/pump.hpp); the dispatcher serves it on some worker and acts on the answer.
//
//   pool_dispatch    the seed's model: the listener's reactor watches every connection one-shot
//                    and hands each ready one to the thread pool, which re-arms it when done.
//                    A thread hand-off per request.
//   loop_dispatch    one reactor per worker (memcached, muduo): a connection is handed over once,
//                    at accept, and its worker's loop serves it from then on. No hand-off per
//                    request; a busy connection cannot move to an idle worker.
//   any_dispatch     either of the two, chosen at run time ([pool] dispatch in the config file):
//                    a program is compiled once, whatever its config says.

#include <malloc.h>
#include <poll.h>

#include <algorithm>
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
#include <utility>
#include <variant>
#include <vector>

#include "dhtkit/concurrency/thread_pool.hpp"
#include "dhtkit/net/reactor.hpp"
#include "dhtkit/net/socket.hpp"
#include "dhtkit/peer/connection.hpp"
#include "dhtkit/peer/settings.hpp"
#include "dhtkit/peer/stats.hpp"

namespace dhtkit {

// How long a closing peer waits for its clients to take its last replies and close their side.
inline constexpr std::chrono::milliseconds linger{500};

template <class D>
concept dispatch_policy = requires(D& d, net::tcp_stream s, any_pump& front) {
    d.adopt(std::move(s), front);                           // serves the stream with that front's pump
    { d.reset(std::as_const(front)) } -> std::same_as<std::size_t>;  // resets the connections of a front
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

    // Ends every connection stalled midway for longer than `limit` (connection.hpp, the idle
    // clock). It is shut down, not closed: the thread that serves it next sees the end and closes
    // it as it would any client that left, so nothing here races with a serve in progress.
    //
    // The sweep after one that ended connections gives free memory back to the system: what a
    // crowd of stalled connections held would otherwise stay with the process (the allocator
    // keeps freed memory for reuse, in as many arenas as threads touched it).
    void sweep(std::chrono::milliseconds limit) {
        const auto now = std::chrono::steady_clock::now();
        bool ended = false;
        {
            std::lock_guard lock(mutex_);
            for (auto& [fd, c] : open_) {
                if (c->timed_out || !c->stalled(now, limit)) continue;
                c->timed_out = true;
                c->stream.shutdown_both();
                stats_.timed_out();
                ended = true;
            }
        }
        if (trim_due_ && !ended) ::malloc_trim(0);
        trim_due_ = ended;
    }

    // Resets every connection of `front` (see reset in the dispatchers). Shut down here and closed
    // by the thread that serves it next, as the idle clock does. Returns how many.
    std::size_t reset(const any_pump& front) {
        std::lock_guard lock(mutex_);
        std::size_t n = 0;
        for (auto& [fd, c] : open_) {
            if (&c->front() != &front || c->timed_out) continue;
            c->stream.reset_on_close();
            c->stream.shutdown_both();
            ++n;
        }
        return n;
    }

    // The graceful end, once no worker serves any more: each connection gets its buffered
    // requests answered and sent, then a FIN; the client has up to `linger` to close its side
    // (its unread bytes would turn our close into a reset), then everything is closed.
    void finish_all(std::chrono::milliseconds linger) {
        std::unordered_map<int, connection_ptr> all;
        {
            std::lock_guard lock(mutex_);
            all.swap(open_);
        }
        std::vector<pollfd> waiting;
        for (auto& [fd, c] : all) {
            for (int round = 0; round < 64; ++round) {
                c->wait_released();  // bounded: whatever a reply waits for always finishes
                if (c->closing) break;
                auto step = c->serve();
                if (step == next_step::drain && !c->flush_within(linger)) break;
                if (step != next_step::again && step != next_step::park && step != next_step::drain) break;
            }
            c->wait_released();
            c->settle();
            (void)c->flush_within(linger);
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
    peer_stats& stats_;
    std::mutex mutex_;
    std::unordered_map<int, connection_ptr> open_;  // guarded by mutex_
    bool trim_due_ = false;                         // the sweeping thread's
};

// Sweeps `open` on `loop` a few times per `idle_timeout` (none when it is zero). The timer's id, or -1.
template <net::reactor Reactor>
int start_sweeping(Reactor& loop, connection_set& open, std::chrono::milliseconds idle_timeout) {
    if (idle_timeout.count() <= 0) return -1;
    const auto period = std::clamp(idle_timeout / 4, std::chrono::milliseconds(50), std::chrono::milliseconds(1000));
    return loop.every(period, [&open, idle_timeout] { open.sweep(idle_timeout); });
}

}  // namespace detail

template <net::reactor Reactor, executor Executor>
class pool_dispatch {
public:
    pool_dispatch(Reactor& listener_loop, std::size_t workers, std::chrono::milliseconds idle_timeout, peer_stats& stats)
        : loop_(listener_loop), pool_(workers), open_(stats),
          sweeper_(detail::start_sweeping(listener_loop, open_, idle_timeout)) {}
    ~pool_dispatch() { stop(); }

    // Resets every connection of `front`: its clients reconnect; a command one sent that is still
    // on its way is refused by the reset instead of run late (the peer's RESP clients, when it
    // regains its leases).
    std::size_t reset(const any_pump& front) { return open_.reset(front); }

    // On the listener thread.
    void adopt(net::tcp_stream s, any_pump& front) {
        auto conn = std::make_shared<connection>(std::move(s), front);
        conn->resume = [this](const connection_ptr& c) { hand_off(c); };
        open_.add(conn);
        loop_.add(conn->stream.fd(), net::interest::read, net::trigger::oneshot, [this, conn](net::readiness) { hand_off(conn); });
    }

    // After the listener loop has stopped: finishes the requests in flight, then closes all.
    void stop() {
        if (stopped_.exchange(true)) return;
        if (sweeper_ >= 0) loop_.cancel(sweeper_);
        pool_.stop();
        open_.finish_all(linger);
    }

private:
    // A pool that refuses work is stopping: the connection is left to stop(), which answers what
    // it sent and closes it gracefully, instead of closing it here under the client's feet.
    void hand_off(const connection_ptr& conn) { (void)pool_.post([this, conn] { serve(conn); }); }

    // One thread serves a connection at a time: it is one-shot, re-armed only here, and a parked
    // one is handed off again only by its last release().
    void serve(const connection_ptr& conn) {
        if (conn->closed) return;
        switch (conn->serve()) {
            case next_step::wait:
                loop_.modify(conn->stream.fd(), net::interest::read, net::trigger::oneshot);
                return;
            case next_step::drain:
                loop_.modify(conn->stream.fd(), net::interest::write, net::trigger::oneshot);
                return;
            case next_step::again:
                return hand_off(conn);
            case next_step::close:
                conn->closed = true;
                loop_.remove(conn->stream.fd());
                open_.erase(conn);
                return;
            case next_step::park:
                return;  // one-shot and not re-armed: nothing wakes it but release()
        }
    }

    Reactor& loop_;
    Executor pool_;
    detail::connection_set open_;
    int sweeper_;
    std::atomic<bool> stopped_{false};
};

template <net::reactor Reactor, executor>
class loop_dispatch {
public:
    loop_dispatch(Reactor& listener_loop, std::size_t workers, std::chrono::milliseconds idle_timeout, peer_stats& stats)
        : listener_loop_(listener_loop), open_(stats) {
        for (std::size_t i = 0; i < workers; ++i) workers_.push_back(std::make_unique<worker>());
        for (auto& w : workers_) w->thread = std::thread([&loop = w->loop] { loop.run(); });
        sweeper_ = detail::start_sweeping(listener_loop, open_, idle_timeout);
    }
    ~loop_dispatch() { stop(); }

    // As pool_dispatch::reset.
    std::size_t reset(const any_pump& front) { return open_.reset(front); }

    // On the listener thread: the connection goes to the next worker, for good.
    void adopt(net::tcp_stream s, any_pump& front) {
        auto conn = std::make_shared<connection>(std::move(s), front);
        open_.add(conn);
        worker& w = *workers_[next_++ % workers_.size()];
        conn->resume = [this, &w](const connection_ptr& c) {
            w.loop.post([this, &w, c] {
                // Closed meanwhile (its client left while a reply was held): nothing to re-arm.
                if (c->closed || c->watching != connection::watch::parked) return;
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
        if (sweeper_ >= 0) listener_loop_.cancel(sweeper_);
        for (auto& w : workers_) w->loop.stop();
        for (auto& w : workers_) w->thread.join();
        open_.finish_all(linger);
    }

private:
    struct worker {
        Reactor loop;
        std::thread thread;
    };

    // On w's loop thread, the only thread that touches this connection's dispatch state.
    void serve(worker& w, const connection_ptr& conn) {
        if (conn->closed) return;
        switch (conn->serve()) {
            case next_step::wait:
                return watch(w, *conn, connection::watch::read);
            case next_step::drain:
                return watch(w, *conn, connection::watch::write);
            case next_step::again:
                watch(w, *conn, connection::watch::read);
                w.loop.post([this, &w, conn] { serve(w, conn); });
                return;
            case next_step::close:
                conn->closed = true;
                w.loop.remove(conn->stream.fd());
                open_.erase(conn);
                return;
            case next_step::park:
                // One-shot while parked: input or a hang-up calls serve at most once, which parks
                // again, instead of a level trigger calling it in a loop.
                return watch(w, *conn, connection::watch::parked);
        }
    }

    static void watch(worker& w, connection& c, connection::watch to) {
        if (c.watching == to) return;
        c.watching = to;
        switch (to) {
            case connection::watch::read: return w.loop.modify(c.stream.fd(), net::interest::read, net::trigger::level);
            case connection::watch::write: return w.loop.modify(c.stream.fd(), net::interest::write, net::trigger::level);
            case connection::watch::parked:
                return w.loop.modify(c.stream.fd(), net::interest::read, net::trigger::oneshot);
        }
    }

    Reactor& listener_loop_;
    detail::connection_set open_;
    int sweeper_ = -1;
    std::vector<std::unique_ptr<worker>> workers_;
    std::size_t next_ = 0;  // only the listener thread adopts
    std::atomic<bool> stopped_{false};
};

// The dispatch model the settings name, chosen when the peer starts.
template <net::reactor Reactor, executor Executor>
class any_dispatch {
public:
    any_dispatch(dispatch_model model, Reactor& listener_loop, std::size_t workers, std::chrono::milliseconds idle_timeout,
                 peer_stats& stats) {
        if (model == dispatch_model::pool)
            chosen_ = std::make_unique<pool_dispatch<Reactor, Executor>>(listener_loop, workers, idle_timeout, stats);
        else
            chosen_ = std::make_unique<loop_dispatch<Reactor, Executor>>(listener_loop, workers, idle_timeout, stats);
    }
    void adopt(net::tcp_stream s, any_pump& front) {
        std::visit([&](auto& d) { d->adopt(std::move(s), front); }, chosen_);
    }
    std::size_t reset(const any_pump& front) {
        return std::visit([&](auto& d) { return d->reset(front); }, chosen_);
    }
    void stop() {
        std::visit([](auto& d) { d->stop(); }, chosen_);
    }

private:
    std::variant<std::unique_ptr<pool_dispatch<Reactor, Executor>>, std::unique_ptr<loop_dispatch<Reactor, Executor>>> chosen_;
};

static_assert(dispatch_policy<any_dispatch<net::epoll_reactor, thread_pool>>);

}  // namespace dhtkit
