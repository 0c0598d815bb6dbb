#pragma once
// A descriptor that one thread makes readable to wake another from poll or epoll (an eventfd):
// notify() from any thread, drain() by the woken one before it waits again.

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <system_error>

#include "dhtkit/net/unique_fd.hpp"

namespace dhtkit::net {

class wakeup {
public:
    wakeup() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
        if (!fd_) throw std::system_error(errno, std::generic_category(), "eventfd");
    }

    [[nodiscard]] int fd() const noexcept { return fd_.get(); }

    // Async-signal-safe, and never blocks (a counter that would overflow stays readable anyway).
    void notify() const noexcept {
        std::uint64_t one = 1;
        [[maybe_unused]] auto r = ::write(fd_.get(), &one, sizeof one);
    }
    void drain() const noexcept {
        std::uint64_t count;
        [[maybe_unused]] auto r = ::read(fd_.get(), &count, sizeof count);
    }

private:
    unique_fd fd_;
};

}  // namespace dhtkit::net
