#pragma once
// A UDP socket: bound, non-blocking, one datagram per call. What failure detection sends (probes
// and gossip) is small, frequent and useless once late, so it goes as datagrams and is never
// queued behind anything.

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "dhtkit/net/address.hpp"
#include "dhtkit/net/socket.hpp"
#include "dhtkit/net/unique_fd.hpp"

namespace dhtkit::net {

class udp_socket {
public:
    static udp_socket bind(const endpoint& at) {
        udp_socket s;
        s.fd_ = detail::bound_socket(at, SOCK_DGRAM, s.local_);
        return s;
    }

    [[nodiscard]] int fd() const noexcept { return fd_.get(); }
    [[nodiscard]] const endpoint& local() const noexcept { return local_; }

    // Sends one datagram; false when the kernel refused it (no route, buffer full): a lost
    // datagram is what the protocol above already expects.
    bool send_to(const endpoint& to, std::string_view bytes) noexcept {
        for (;;) {
            auto n = ::sendto(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL, to.data(), to.size());
            if (n >= 0) return true;
            if (errno != EINTR) return false;
        }
    }

    // The next datagram waiting, into `buffer` (resized to it), and who sent it; nullopt when
    // none is waiting. Errors a previous send left on the socket (ICMP unreachable) are dropped.
    std::optional<endpoint> receive(std::string& buffer) noexcept {
        buffer.resize(max_datagram);
        for (;;) {
            endpoint from;
            socklen_t len = sizeof(sockaddr_storage);
            auto n = ::recvfrom(fd_.get(), buffer.data(), buffer.size(), 0, from.data(), &len);
            if (n >= 0) {
                buffer.resize(static_cast<std::size_t>(n));
                from.set_size(len);
                return from;
            }
            if (errno == EINTR || errno == ECONNREFUSED) continue;
            buffer.clear();
            return std::nullopt;
        }
    }

    // Waits up to `timeout` for a datagram to arrive. False on timeout.
    bool wait(std::chrono::milliseconds timeout) const noexcept {
        pollfd p{fd_.get(), POLLIN, 0};
        const int ms = static_cast<int>(std::max<std::int64_t>(0, timeout.count()));
        int r = ::poll(&p, 1, ms);
        return r > 0;
    }

    static constexpr std::size_t max_datagram = 65507;

private:
    udp_socket() = default;
    unique_fd fd_;
    endpoint local_;
};

}  // namespace dhtkit::net
