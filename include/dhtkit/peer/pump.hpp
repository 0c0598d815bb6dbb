#pragma once
// The connection pump: the one serve loop that every front runs in. A front is a wire protocol
// (our frames in peer/front/binary.hpp, RESP in peer/front/resp.hpp): it parses requests and
// answers them. The pump does everything else, the same way for each:
//
//   read        what has arrived, into the front's reader (with the kernel's arrival stamps when
//               the front asks for them);
//   limits      a batch ends after [limits] max_in_flight requests, so one pipelining client
//               cannot keep a worker from the others, and when the output passes max_output_bytes,
//               so a client that does not read stops being read until it has taken it;
//   the gate    with a client password, a request that needs it on a connection that has not
//               sent it is refused (each front words the refusal); and until it has, a request
//               may hold at most before_auth_bytes unparsed (an AUTH, a HELLO), so that an
//               outsider cannot make the peer buffer megabytes for it (Redis bounds the same
//               after CVE-2021-32675): past that the connection is answered and closed;
//   held        replies held for copies or other threads park the connection; the last release
//               serves it again, and the front finishes the batch (settle, then its own rendering);
//   send        as much as the socket takes, never waiting; a stream after a reply ends the batch;
//   idle clock  before the connection can leave this thread, the pump notes whether a request is
//               half received or output half sent (connection.hpp), so a stalled client of any
//               front is closed by the dispatcher's sweep.
//
// A malformed request gets the front's error, and the connection closes once it has gone.

#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "dhtkit/peer/connection.hpp"

namespace dhtkit {

// What a front's reader found in the input.
enum class parsed : std::uint8_t { request, need_more, error };
// What answering one request leaves the pump to do.
enum class handled : std::uint8_t {
    next,            // go on with the next request
    stream_follows,  // its reply streams (a file, a sync): the rest waits until it has gone
    close,           // close once the replies have gone (QUIT)
};

// Everything the pump calls. `session`: per-connection state, built by open(); `request`: one
// parsed request, valid until the session's next feed() or next().
template <class F>
concept front = requires(F& f, const F& cf, typename F::session& s, const typename F::session& cs,
                         typename F::request& r, connection& c, std::string_view bytes, std::uint64_t arrived_us) {
    { F::stamps_arrivals } -> std::convertible_to<bool>;  // receive with the kernel's arrival stamps
    { cf.open() } -> std::same_as<typename F::session>;
    s.feed(bytes, arrived_us);                      // arrived_us: 0 when not stamped
    { s.next(r) } -> std::same_as<parsed>;
    { cs.buffered() } -> std::convertible_to<std::size_t>;  // bytes of a request not yet whole
    s.release_if_empty();                           // gives an idle reader's memory back
    f.malformed(s, c);                              // answers the error next() found
    { cf.needs_password(r) } -> std::convertible_to<bool>;
    f.unauthenticated(r, s, c);                     // refuses a request for want of the password
    f.too_long_before_auth(s, c);                   // refuses a request too long for a connection without it
    { f.handle(r, s, c) } -> std::same_as<handled>;
    f.finish(s, c);                                 // nothing held: renders the batch's outcomes into c.out
};

// What a connection without the password may hold of a request not yet whole.
inline constexpr std::size_t before_auth_bytes = 16 * 1024;

// [limits] max_in_flight and max_output_bytes (peer/settings.hpp).
struct pump_limits {
    std::size_t max_in_flight = 128;
    std::size_t max_output_bytes = 1 << 20;
};

template <front Front>
class pump final : public any_pump {
public:
    using session = typename Front::session;

    // `password`: the client password; empty when the peer has none.
    pump(Front& f, pump_limits lim, std::string password) : front_(f), limits_(lim), password_(std::move(password)) {}

    [[nodiscard]] std::unique_ptr<front_session> open() const override { return std::make_unique<state>(front_.open()); }

    // A connection's front state, for the front's own helpers.
    static session& of(connection& c) noexcept { return c.session<state>().s; }

    next_step serve(connection& c) override {
        if (c.held()) return next_step::park;  // woken while parked
        auto& s = of(c);
        if (auto step = finish_and_send(c, s)) return *step;
        if (c.closing) return next_step::close;  // its last reply has gone
        bool more = false;
        c.begin_batch();
        const bool open = receive(c, s, gated(c)) && run(c, s, more);
        c.closing = c.closing || !open;
        c.note_progress(s.buffered() > 0);  // before end_batch: once it returns, a release may serve c elsewhere
        if (c.end_batch()) return next_step::park;
        if (auto step = finish_and_send(c, s)) return *step;
        if (c.closing) return next_step::close;
        c.trim();
        s.release_if_empty();
        return more ? next_step::again : next_step::wait;
    }

private:
    static constexpr std::size_t read_chunk = 64 * 1024;

    struct state final : front_session {
        explicit state(session from) : s(std::move(from)) {}
        session s;
    };

    // Puts held replies in their places, lets the front finish them, sends what the socket takes.
    // A step when the serve ends here.
    std::optional<next_step> finish_and_send(connection& c, session& s) {
        c.settle();
        front_.finish(s, c);
        const auto sent = c.flush();
        c.note_progress(s.buffered() > 0);
        switch (sent) {
            case connection::flush_result::failed: return next_step::close;
            case connection::flush_result::pending: return next_step::drain;
            case connection::flush_result::done: return std::nullopt;
        }
        return std::nullopt;
    }

    // Whether `c` still owes the password.
    [[nodiscard]] bool gated(const connection& c) const noexcept { return !password_.empty() && !c.authenticated; }

    // Reads what has arrived. False when the client has gone. Bytes land in a per-worker buffer
    // and only what they hold is copied into the session's reader, which keeps an idle
    // connection's memory small. `gated`: reads stop once before_auth_bytes are buffered (the
    // rest waits in the socket until what is here has been answered).
    static bool receive(connection& c, session& s, bool gated) {
        thread_local std::array<std::byte, read_chunk> scratch;
        for (;;) {
            std::uint64_t arrived_ns = 0;
            auto in = Front::stamps_arrivals ? c.stream.receive_some_stamped(scratch, arrived_ns) : c.stream.receive_some(scratch);
            if (!in) return false;
            c.count_received(in.bytes);
            if (in.bytes == 0) return true;
            s.feed({reinterpret_cast<const char*>(scratch.data()), in.bytes}, arrived_ns / 1000);
            // A short read drained the socket; the level-triggered re-arm catches anything later.
            if (in.bytes < read_chunk || (gated && s.buffered() > before_auth_bytes)) return true;
        }
    }

    // Answers what is buffered, within the batch's bounds. False when the connection closes.
    bool run(connection& c, session& s, bool& more) {
        typename Front::request r;
        for (std::size_t n = 0; n < limits_.max_in_flight; ++n) {
            if (c.unsent() > limits_.max_output_bytes) break;
            switch (s.next(r)) {
                case parsed::need_more:
                    if (gated(c) && s.buffered() > before_auth_bytes) {
                        front_.too_long_before_auth(s, c);
                        return false;
                    }
                    return true;
                case parsed::error: front_.malformed(s, c); return false;
                case parsed::request: break;
            }
            if (!password_.empty() && !c.authenticated && front_.needs_password(r)) {
                front_.unauthenticated(r, s, c);
                continue;
            }
            switch (front_.handle(r, s, c)) {
                case handled::next: continue;
                case handled::stream_follows: more = true; return true;
                case handled::close: return false;
            }
        }
        more = true;
        return true;
    }

    Front& front_;
    pump_limits limits_;
    std::string password_;
};

}  // namespace dhtkit
