#pragma once
// A client connection as the peer serves it: the stream, the state its front keeps (what it has
// read, who it authenticated as), and its output.
//
// The connection owns its output, muduo-style: replies are appended to `out` and sent as the socket
// takes them, never waited for. What does not fit now is sent on the next writable event, and the
// connection reads no further request meanwhile, so a client that does not read slows only itself.
//
// Services answer with typed outcomes (peer/outcome.hpp), recorded here in request order; the
// front renders them into `out` in its own words once nothing is held (finish()).
//
// A reply can be held: a write's reply waits for its copies, an announce runs on another thread.
// hold() reserves the reply's place after the outcomes recorded so far; whoever completes it fills
// its outcome and calls release(). While anything is held the connection is parked (nothing read,
// nothing sent); the last release() asks the dispatcher to serve it again, and settle() then puts
// the completed outcomes in their places, in request order.
//
// A reply may be followed by a stream (a file's bytes, a sync's records): an output_source, pumped
// whenever the socket has room, until it ends. Requests after it wait until it has.
//
// Which front speaks on it (our frames, RESP) is the pump it was adopted with (peer/pump.hpp):
// serve() runs that pump, the one serve loop of every front.
//
// The idle clock: after each serve the pump notes whether a request is half received or a reply
// half sent, and when a byte last moved; the dispatcher's sweep closes a connection stalled so for
// longer than [limits] idle_timeout_s (a client that sends half a request and waits, or stops
// reading), whatever its front.

#include <poll.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dhtkit/net/socket.hpp"
#include "dhtkit/peer/outcome.hpp"

namespace dhtkit {

// The rest of a response that is too large to build at once.
class output_source {
public:
    enum class progress { more, done, failed };
    virtual ~output_source() = default;
    // Adds to `out` (which the connection then sends) or sends on `s` directly; never waits.
    // `more` when it has more to give once the socket has room again.
    virtual progress pump(net::tcp_stream& s, std::string& out) = 0;
    // The bytes pump() has sent on the socket itself: they count as the connection moving.
    [[nodiscard]] std::uint64_t sent_directly() const noexcept { return sent_directly_; }

protected:
    std::uint64_t sent_directly_ = 0;
};

// A reply completed elsewhere: its outcome, and what streams after it. A reply held with a
// provisional outcome already recorded keeps that one unless `answer` is set by then; one held
// with neither (a stream that says everything itself) adds nothing but its stream.
struct held_reply {
    std::optional<outcome> answer;
    std::unique_ptr<output_source> then;
};

class connection;
using connection_ptr = std::shared_ptr<connection>;

// What serving a connection leaves to do.
enum class next_step {
    wait,   // everything was answered and sent: wait for more input
    again,  // a batch was answered and more is buffered: serve again after others had a turn
    drain,  // output waits for room in the socket: serve again when it is writable
    close,  // the client went away or broke the protocol
    park,   // replies are held; connection::release() resumes it
};

// What a front keeps per connection (its reader, its notes of the batch), behind one base so
// that a connection holds any front's.
struct front_session {
    virtual ~front_session() = default;
};

// The serve loop of one front, as the dispatcher sees it (peer/pump.hpp has the one there is).
class any_pump {
public:
    virtual ~any_pump() = default;
    // A new connection's state.
    [[nodiscard]] virtual std::unique_ptr<front_session> open() const = 0;
    // Serves a ready connection: answers what arrived, sends what the socket takes.
    virtual next_step serve(connection& c) = 0;
};

class connection : public std::enable_shared_from_this<connection> {
public:
    connection(net::tcp_stream s, any_pump& front) : stream(std::move(s)), pump_(&front), session_(front.open()) {}
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;

    net::tcp_stream stream;
    std::string out;  // replies, in request order; the serving thread's
    // The serving thread's, set by the pump: the client sent the password (when the peer has
    // one); the protocol broke, or the client said goodbye: close once the replies have gone.
    bool authenticated = false;
    bool closing = false;

    // Runs the connection's pump. One thread at a time (the dispatcher's promise).
    next_step serve() { return pump_->serve(*this); }
    [[nodiscard]] const any_pump& front() const noexcept { return *pump_; }
    // The front's state of this connection; `S` is the type that front's pump opened.
    template <class S>
    [[nodiscard]] S& session() noexcept {
        return static_cast<S&>(*session_);
    }

    // Set by the dispatcher: serve this parked connection again, on a thread of its choosing.
    std::function<void(const connection_ptr&)> resume;
    // The dispatcher's own notes, touched only by the thread serving the connection.
    enum class watch : std::uint8_t { read, write, parked };
    watch watching = watch::read;
    bool closed = false;
    bool timed_out = false;  // the sweep's, under the connection set's lock

    // --- holding replies (serving thread, except release) ---------------------------------------

    // Opens a batch: releases that happen before end_batch() cannot resume a connection that is
    // still being served.
    void begin_batch() noexcept { awaiting_.store(1, std::memory_order_relaxed); }
    // Closes it; true when replies are still held (the caller parks the connection).
    bool end_batch() noexcept { return awaiting_.fetch_sub(1, std::memory_order_acq_rel) != 1; }
    [[nodiscard]] bool held() const noexcept { return awaiting_.load(std::memory_order_acquire) != 0; }

    // Reserves the place of one reply after the outcomes recorded so far.
    std::shared_ptr<held_reply> hold() {
        auto h = std::make_shared<held_reply>();
        hold(h, false);
        return h;
    }
    // The same for `h`; `provisional`: the last outcome recorded is its reply unless `h` has one.
    void hold(std::shared_ptr<held_reply> h, bool provisional) {
        holds_.push_back({answered_ - (provisional ? 1 : 0), provisional, std::move(h)});
        awaiting_.fetch_add(1, std::memory_order_relaxed);
    }

    // One held thing is done; any thread. The last one resumes the connection.
    void release() {
        if (awaiting_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
            awaiting_.notify_all();
            resume(shared_from_this());
        }
    }

    // Waits until nothing is held: for a dispatcher that is stopping and serves connections itself.
    void wait_released() const noexcept {
        for (auto n = awaiting_.load(std::memory_order_acquire); n != 0; n = awaiting_.load(std::memory_order_acquire))
            awaiting_.wait(n, std::memory_order_acquire);
    }

    // Puts the outcomes of completed replies in their places. Only once nothing is held.
    void settle() {
        if (holds_.empty()) return;
        // Most held replies are writes whose provisional outcome stands: nothing to move then.
        bool splice = false;
        for (const auto& h : holds_) splice = splice || h.reply->answer.has_value();
        if (splice) {
            std::vector<outcome> merged;
            merged.reserve(answered_ + holds_.size());
            std::size_t from = 0;
            auto keep = [&](std::size_t to) {
                for (; from < to; ++from) merged.push_back(std::move(answers_[from]));
            };
            for (auto& h : holds_) {
                keep(h.at);
                if (h.reply->answer) merged.push_back(std::move(*h.reply->answer));
                else if (h.provisional) merged.push_back(std::move(answers_[h.at]));
                from = h.at + (h.provisional ? 1 : 0);
            }
            keep(answered_);
            answers_ = std::move(merged);
            answered_ = answers_.size();
            counted_ = 0;
            answer_bytes_ = 0;
        }
        for (auto& h : holds_)
            if (h.reply->then) source_ = std::move(h.reply->then);  // a stream ends a batch: the last hold
        holds_.clear();
    }

    // --- outcomes (the serving thread's) ----------------------------------------------------------

    // A fresh outcome after those recorded so far, for the caller to fill.
    outcome& answer() {
        if (answered_ == answers_.size()) answers_.emplace_back();
        auto& o = answers_[answered_++];
        o.assign({});
        return o;
    }
    outcome& answer(const protocol::header& h, std::string_view value) { return answer().assign(h, value); }
    // How many are recorded: a mark for take_back().
    [[nodiscard]] std::size_t answered() const noexcept { return answered_; }
    // Drops the outcomes recorded after `mark` (a read answered, then refused by its lease check).
    void take_back(std::size_t mark) noexcept {
        answered_ = mark;
        if (counted_ > mark) counted_ = answer_bytes_ = 0;
    }
    // The batch's outcomes, in request order, for the front to render; then clear_answers().
    [[nodiscard]] std::span<outcome> answers() noexcept { return std::span(answers_).first(answered_); }
    void clear_answers() {
        for (std::size_t i = 0; i < answered_; ++i)  // a large value's memory is not kept for the next batch
            if (answers_[i].value.capacity() > 64 * 1024) std::string().swap(answers_[i].value);
        answered_ = counted_ = answer_bytes_ = 0;
    }

    enum class flush_result { done, pending, failed };

    // Sends what the socket takes now: `out`, then the stream. Never waits.
    flush_result flush() {
        for (;;) {
            while (sent_ < out.size()) {
                auto r = stream.send_some(std::as_bytes(std::span(out)).subspan(sent_));
                if (!r) return flush_result::failed;
                if (r.bytes == 0) return flush_result::pending;
                sent_ += r.bytes;
                moved_ += r.bytes;
            }
            out.clear();
            sent_ = 0;
            if (!source_) return flush_result::done;
            const auto direct = source_->sent_directly();
            const auto step = source_->pump(stream, out);
            moved_ += source_->sent_directly() - direct;
            switch (step) {
                case output_source::progress::failed: return flush_result::failed;
                case output_source::progress::done: source_.reset(); break;
                case output_source::progress::more:
                    if (out.empty()) return flush_result::pending;  // it sent directly and the socket is full
                    break;
            }
        }
    }
    // Bytes not sent yet: of `out`, and the values of outcomes not rendered yet.
    [[nodiscard]] std::size_t unsent() const noexcept {
        for (; counted_ < answered_; ++counted_) answer_bytes_ += answers_[counted_].value.size();
        return out.size() - sent_ + answer_bytes_;
    }

    // For a stopping peer only, off every loop: sends the rest, waiting up to `limit` in all.
    bool flush_within(std::chrono::milliseconds limit) {
        auto until = std::chrono::steady_clock::now() + limit;
        for (;;) {
            auto r = flush();
            if (r != flush_result::pending) return r == flush_result::done;
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
            pollfd p{stream.fd(), POLLOUT, 0};
            if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
        }
    }
    // Gives back an idle connection's memory.
    void trim() {
        if (out.empty() && out.capacity() > 64 * 1024) std::string().swap(out);
        if (answered_ == 0 && answers_.size() > 1024) std::vector<outcome>().swap(answers_);
    }

    // --- the idle clock --------------------------------------------------------------------------

    // The serving thread, for bytes it read.
    void count_received(std::size_t n) noexcept { moved_ += n; }
    // The serving thread (the pump), while the connection is still its own: `half_read` when a
    // request is partly received.
    void note_progress(bool half_read) noexcept {
        if (moved_ != noted_) {
            noted_ = moved_;
            last_moved_.store(std::chrono::steady_clock::now().time_since_epoch().count(), std::memory_order_relaxed);
        }
        midway_.store(half_read || unsent() > 0 || source_ != nullptr, std::memory_order_relaxed);
    }
    // Any thread: stalled midway (and not waiting on a reply of ours) for longer than `limit`.
    [[nodiscard]] bool stalled(std::chrono::steady_clock::time_point now, std::chrono::milliseconds limit) const noexcept {
        if (!midway_.load(std::memory_order_relaxed) || held()) return false;
        const std::chrono::steady_clock::time_point last{
            std::chrono::steady_clock::duration(last_moved_.load(std::memory_order_relaxed))};
        return now - last > limit;
    }

private:
    any_pump* pump_;
    std::unique_ptr<front_session> session_;
    mutable std::atomic<std::size_t> awaiting_{0};
    std::uint64_t moved_ = 0;  // bytes read and sent; the serving thread's
    std::uint64_t noted_ = 0;  // moved_ when last noted; the serving thread's
    std::atomic<std::chrono::steady_clock::rep> last_moved_{std::chrono::steady_clock::now().time_since_epoch().count()};
    std::atomic<bool> midway_{false};
    struct hold_entry {
        std::size_t at;    // where its outcome goes among answers_
        bool provisional;  // the outcome there is its own, replaced if it gets one
        std::shared_ptr<held_reply> reply;
    };
    std::vector<outcome> answers_;  // the first answered_ are this batch's; the rest keep their memory
    std::size_t answered_ = 0;
    mutable std::size_t counted_ = 0;       // answers_ whose bytes answer_bytes_ holds
    mutable std::size_t answer_bytes_ = 0;
    std::vector<hold_entry> holds_;  // the serving thread's
    std::size_t sent_ = 0;
    std::unique_ptr<output_source> source_;
};

}  // namespace dhtkit
