#pragma once
// Takes every connection waiting on a listener. Out of descriptors (EMFILE, ENFILE), it accepts
// the next one on a descriptor kept in reserve and closes it at once, so that its client hears a
// close instead of the listener's level-triggered loop spinning on a connection it cannot take.

#include <fcntl.h>

#include <cerrno>
#include <utility>

#include "dhtkit/net/socket.hpp"
#include "dhtkit/net/unique_fd.hpp"

namespace dhtkit::net {

class acceptor {
public:
    acceptor() : spare_(open_spare()) {}

    // Calls take(tcp_stream) for each connection waiting on `from`, until none is left.
    template <class F>
    void accept_all(tcp_listener& from, F&& take) {
        for (;;) {
            int error = 0;
            auto s = from.try_accept(&error);
            if (!s) {
                if (error == EMFILE || error == ENFILE) shed_one(from);
                return;
            }
            take(std::move(*s));
        }
    }

private:
    static unique_fd open_spare() noexcept { return unique_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC)); }

    void shed_one(tcp_listener& from) {
        spare_.reset();
        if (auto s = from.try_accept()) s->close();
        spare_ = open_spare();
    }

    unique_fd spare_;
};

}  // namespace dhtkit::net
