#pragma once
// TCP sockets over IPv4 and IPv6: a listener and a stream, with exact-length transfers that ride
// out EINTR, EAGAIN and short writes, connect with a timeout, and sendfile.
//
// Setup (bind, connect) throws std::system_error naming the address; transfers return an
// io_result, because a peer closing or stalling is an ordinary event on the serving path.

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <optional>
#include <span>
#include <system_error>

#include <fmt/format.h>

#include "dhtkit/net/address.hpp"
#include "dhtkit/net/unique_fd.hpp"

namespace dhtkit::net {

// A negative timeout waits for ever.
inline constexpr std::chrono::milliseconds no_timeout{-1};

enum class io_status { ok, closed, timed_out, error };

struct io_result {
    io_status status = io_status::ok;
    std::size_t bytes = 0;  // transferred before the status was reached
    int error = 0;          // errno when status == error

    [[nodiscard]] bool ok() const noexcept { return status == io_status::ok; }
    explicit operator bool() const noexcept { return ok(); }
};

namespace detail {

inline std::system_error socket_error(int error, std::string_view what, const endpoint& where) {
    return std::system_error(error, std::generic_category(),
                             fmt::format("{} {}", what, where.to_string()));
}

// A non-blocking socket of `type` bound to `at`; `local` becomes the bound address (with the
// port the kernel chose for port 0). For TCP, SO_REUSEADDR first: a restarted peer takes its
// port back at once.
inline unique_fd bound_socket(const endpoint& at, int type, endpoint& local) {
    unique_fd fd(::socket(at.family(), type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) throw socket_error(errno, "socket() for", at);
    if (type == SOCK_STREAM) {
        int one = 1;
        ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    }
    if (::bind(fd.get(), at.data(), at.size()) != 0)
        throw socket_error(errno, type == SOCK_STREAM ? "bind" : "bind (udp)", at);
    local = at;
    socklen_t len = sizeof(sockaddr_storage);
    if (::getsockname(fd.get(), local.data(), &len) == 0) local.set_size(len);
    return fd;
}

// Waits until `fd` is ready for `events` or the deadline passes. False on timeout.
inline bool wait_ready(int fd, short events,
                       std::optional<std::chrono::steady_clock::time_point> deadline) {
    for (;;) {
        int wait_ms = -1;
        if (deadline) {
            auto left = std::chrono::ceil<std::chrono::milliseconds>(
                *deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) return false;
            wait_ms = static_cast<int>(left.count());
        }
        pollfd p{fd, events, 0};
        int rc = ::poll(&p, 1, wait_ms);
        if (rc > 0) return true;
        if (rc == 0) return false;
        if (errno != EINTR) return true;  // let the following call report the real error
    }
}

inline std::optional<std::chrono::steady_clock::time_point> deadline_after(
    std::chrono::milliseconds timeout) {
    if (timeout.count() < 0) return std::nullopt;
    return std::chrono::steady_clock::now() + timeout;
}

}  // namespace detail

class tcp_stream {
public:
    tcp_stream() = default;
    tcp_stream(unique_fd fd, endpoint remote) noexcept : fd_(std::move(fd)), remote_(remote) {}

    // Connects within `timeout`; the stream is left in blocking mode.
    static tcp_stream connect(const endpoint& to, std::chrono::milliseconds timeout = no_timeout) {
        unique_fd fd(::socket(to.family(), SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        if (!fd) throw detail::socket_error(errno, "socket() for", to);
        if (::connect(fd.get(), to.data(), to.size()) != 0) {
            if (errno != EINPROGRESS) throw detail::socket_error(errno, "connect to", to);
            if (!detail::wait_ready(fd.get(), POLLOUT, detail::deadline_after(timeout)))
                throw detail::socket_error(ETIMEDOUT, "connect to", to);
            int error = 0;
            socklen_t len = sizeof error;
            ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &len);
            if (error != 0) throw detail::socket_error(error, "connect to", to);
        }
        tcp_stream s(std::move(fd), to);
        s.set_nonblocking(false);
        s.set_nodelay(true);
        return s;
    }

    [[nodiscard]] int fd() const noexcept { return fd_.get(); }
    [[nodiscard]] bool valid() const noexcept { return fd_.valid(); }
    [[nodiscard]] const endpoint& remote() const noexcept { return remote_; }
    void close() noexcept { fd_.reset(); }

    void set_nonblocking(bool on) {
        int flags = ::fcntl(fd(), F_GETFL);
        if (flags < 0 || ::fcntl(fd(), F_SETFL, on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK) < 0)
            throw detail::socket_error(errno, "fcntl(O_NONBLOCK) on stream to", remote_);
    }
    void set_nodelay(bool on) noexcept {
        int v = on ? 1 : 0;
        ::setsockopt(fd(), IPPROTO_TCP, TCP_NODELAY, &v, sizeof v);
    }
    void set_send_buffer(int bytes) noexcept {
        ::setsockopt(fd(), SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
    }
    void set_receive_buffer(int bytes) noexcept {
        ::setsockopt(fd(), SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
    }
    // Asks the kernel to note when each segment arrived (SO_TIMESTAMPNS), for receive_some_stamped.
    void enable_receive_stamps() noexcept {
        int one = 1;
        ::setsockopt(fd(), SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
    }
    void shutdown_write() noexcept { ::shutdown(fd(), SHUT_WR); }
    // Ends both directions without closing the descriptor: whichever thread uses it next sees
    // the end, so another thread can end a stream it does not serve.
    void shutdown_both() noexcept { ::shutdown(fd(), SHUT_RDWR); }
    // Closing sends a reset instead of a FIN (SO_LINGER 0): what the other side still sends is
    // refused, not read.
    void reset_on_close() noexcept {
        ::linger l{1, 0};
        ::setsockopt(fd(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }

    // True once there is something to read (or the peer closed); false at the timeout.
    [[nodiscard]] bool wait_readable(std::chrono::milliseconds timeout) const noexcept {
        return detail::wait_ready(fd(), POLLIN, detail::deadline_after(timeout));
    }

    // One send() call, never blocking: 0 bytes when the buffer is full.
    io_result send_some(std::span<const std::byte> data) noexcept {
        for (;;) {
            ssize_t n = ::send(fd(), data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n >= 0) return {io_status::ok, static_cast<std::size_t>(n), 0};
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return {io_status::ok, 0, 0};
            if (errno == EPIPE || errno == ECONNRESET) return {io_status::closed, 0, errno};
            return {io_status::error, 0, errno};
        }
    }

    // One recv() call, never blocking: 0 bytes when nothing is waiting; `closed` when the peer
    // has shut down its side.
    io_result receive_some(std::span<std::byte> into) noexcept {
        for (;;) {
            ssize_t n = ::recv(fd(), into.data(), into.size(), MSG_DONTWAIT);
            if (n > 0) return {io_status::ok, static_cast<std::size_t>(n), 0};
            if (n == 0) return {into.empty() ? io_status::ok : io_status::closed, 0, 0};
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return {io_status::ok, 0, 0};
            if (errno == ECONNRESET) return {io_status::closed, 0, errno};
            return {io_status::error, 0, errno};
        }
    }

    // As receive_some, and `arrived_ns`: when the last segment read reached this host (the
    // kernel's wall clock, ns since the Unix epoch), or left as it was when the kernel did not
    // say (enable_receive_stamps() not called, or a segment older than the option). Bytes that
    // waited in the kernel while this process was stopped keep the moment they came.
    io_result receive_some_stamped(std::span<std::byte> into, std::uint64_t& arrived_ns) noexcept {
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(timespec))];
        for (;;) {
            iovec iov{into.data(), into.size()};
            msghdr msg{};
            msg.msg_iov = &iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control;
            msg.msg_controllen = sizeof control;
            ssize_t n = ::recvmsg(fd(), &msg, MSG_DONTWAIT);
            if (n > 0) {
                for (cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm))
                    if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPNS) {
                        timespec ts;
                        std::memcpy(&ts, CMSG_DATA(cm), sizeof ts);
                        arrived_ns = static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
                    }
                return {io_status::ok, static_cast<std::size_t>(n), 0};
            }
            if (n == 0) return {into.empty() ? io_status::ok : io_status::closed, 0, 0};
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return {io_status::ok, 0, 0};
            if (errno == ECONNRESET) return {io_status::closed, 0, errno};
            return {io_status::error, 0, errno};
        }
    }

    // All of `data`, or the reason why not, within `timeout` for the whole transfer.
    io_result send_all(std::span<const std::byte> data,
                       std::chrono::milliseconds timeout = no_timeout) noexcept {
        return transfer_all(data.size(), POLLOUT, timeout, [&](std::size_t done) {
            return send_some(data.subspan(done));
        });
    }

    io_result receive_all(std::span<std::byte> into,
                          std::chrono::milliseconds timeout = no_timeout) noexcept {
        return transfer_all(into.size(), POLLIN, timeout, [&](std::size_t done) {
            return receive_some(into.subspan(done));
        });
    }

    // `count` bytes of `file_fd` from `offset`, copied by the kernel.
    io_result send_file(int file_fd, off_t offset, std::size_t count,
                        std::chrono::milliseconds timeout = no_timeout) noexcept {
        return transfer_all(count, POLLOUT, timeout, [&](std::size_t done) {
            return send_file_some(file_fd, offset + static_cast<off_t>(done), count - done);
        });
    }

    // As much of it as the socket takes now, without waiting for room (0 bytes: full).
    io_result send_file_some(int file_fd, off_t offset, std::size_t count) noexcept {
        for (;;) {
            ssize_t n = ::sendfile(fd(), file_fd, &offset, count);
            if (n > 0) return {io_status::ok, static_cast<std::size_t>(n), 0};
            if (n == 0) return {io_status::error, 0, ESPIPE};  // the file is shorter than promised
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return {io_status::ok, 0, 0};
            if (errno == EPIPE || errno == ECONNRESET) return {io_status::closed, 0, errno};
            return {io_status::error, 0, errno};
        }
    }

private:
    template <class Step>
    io_result transfer_all(std::size_t total, short events, std::chrono::milliseconds timeout,
                           Step step) noexcept {
        auto deadline = detail::deadline_after(timeout);
        std::size_t done = 0;
        while (done < total) {
            io_result r = step(done);
            done += r.bytes;
            if (!r.ok()) return {r.status, done, r.error};
            if (r.bytes == 0 && !detail::wait_ready(fd(), events, deadline))
                return {io_status::timed_out, done, ETIMEDOUT};
        }
        return {io_status::ok, done, 0};
    }

    unique_fd fd_;
    endpoint remote_;
};

class tcp_listener {
public:
    // Binds and listens; the listener is non-blocking so that a reactor can own it.
    static tcp_listener bind(const endpoint& at, int backlog = 4096) {
        tcp_listener l;
        l.fd_ = detail::bound_socket(at, SOCK_STREAM, l.local_);
        if (::listen(l.fd_.get(), backlog) != 0) throw detail::socket_error(errno, "listen on", at);
        return l;
    }

    [[nodiscard]] int fd() const noexcept { return fd_.get(); }
    // Accepted streams note when their segments arrived (tcp_stream::receive_some_stamped), from
    // their first byte on: the option is inherited.
    void enable_receive_stamps() noexcept {
        int one = 1;
        ::setsockopt(fd(), SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
    }
    // Stops listening: connections to the address are refused from now on.
    void close() noexcept { fd_.reset(); }
    // The bound address, with the port the kernel chose when bound to port 0.
    [[nodiscard]] const endpoint& local() const noexcept { return local_; }

    // The next pending connection, non-blocking and with TCP_NODELAY, or nullopt when none is
    // pending or the accept failed transiently (`error` then says why: EAGAIN, EMFILE, ...).
    std::optional<tcp_stream> try_accept(int* error = nullptr) noexcept {
        endpoint remote;
        for (;;) {
            socklen_t len = sizeof(sockaddr_storage);
            int fd = ::accept4(fd_.get(), remote.data(), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd >= 0) {
                remote.set_size(len);
                tcp_stream s(unique_fd(fd), remote);
                s.set_nodelay(true);
                return s;
            }
            if (errno == EINTR) continue;
            if (error) *error = errno;
            return std::nullopt;
        }
    }

    // Blocks until a connection arrives or `timeout` passes.
    std::optional<tcp_stream> accept(std::chrono::milliseconds timeout = no_timeout) noexcept {
        auto deadline = detail::deadline_after(timeout);
        for (;;) {
            int error = 0;
            if (auto s = try_accept(&error)) return s;
            if (error != EAGAIN && error != EWOULDBLOCK && error != ECONNABORTED) return std::nullopt;
            if (!detail::wait_ready(fd(), POLLIN, deadline)) return std::nullopt;
        }
    }

private:
    unique_fd fd_;
    endpoint local_;
};

// What the peer needs from a connected byte stream.
template <class S>
concept byte_stream = requires(S& s, std::span<const std::byte> out, std::span<std::byte> in,
                               std::chrono::milliseconds timeout) {
    { s.fd() } -> std::same_as<int>;
    { s.send_all(out, timeout) } -> std::same_as<io_result>;
    { s.receive_all(in, timeout) } -> std::same_as<io_result>;
    { s.send_some(out) } -> std::same_as<io_result>;
    { s.receive_some(in) } -> std::same_as<io_result>;
};
static_assert(byte_stream<tcp_stream>);

}  // namespace dhtkit::net
