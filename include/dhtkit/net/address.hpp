#pragma once
// An IPv4 or IPv6 TCP endpoint: parsed from "host:port" / "[v6]:port", resolved, printed.

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>

#include <fmt/format.h>

namespace dhtkit::net {

class endpoint {
public:
    endpoint() noexcept { std::memset(&storage_, 0, sizeof storage_); }

    // Numeric addresses only; no name lookup. Throws std::invalid_argument naming the text.
    static endpoint from_numeric(std::string_view host, std::uint16_t port) {
        endpoint e;
        std::string h(host);
        auto* v4 = reinterpret_cast<sockaddr_in*>(&e.storage_);
        auto* v6 = reinterpret_cast<sockaddr_in6*>(&e.storage_);
        if (::inet_pton(AF_INET, h.c_str(), &v4->sin_addr) == 1) {
            v4->sin_family = AF_INET;
            v4->sin_port = htons(port);
            e.length_ = sizeof(sockaddr_in);
        } else if (::inet_pton(AF_INET6, h.c_str(), &v6->sin6_addr) == 1) {
            v6->sin6_family = AF_INET6;
            v6->sin6_port = htons(port);
            e.length_ = sizeof(sockaddr_in6);
        } else {
            throw std::invalid_argument(
                fmt::format("address '{}': expected a numeric IPv4 or IPv6 address", host));
        }
        return e;
    }

    // Numeric addresses, or a name resolved through getaddrinfo (the first TCP result).
    static endpoint resolve(std::string_view host, std::uint16_t port) {
        try {
            return from_numeric(host, port);
        } catch (const std::invalid_argument&) {
        }
        addrinfo hints{};
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        addrinfo* found = nullptr;
        std::string h(host);
        if (int rc = ::getaddrinfo(h.c_str(), nullptr, &hints, &found); rc != 0 || !found) {
            throw std::invalid_argument(
                fmt::format("address '{}': cannot resolve: {}", host, ::gai_strerror(rc)));
        }
        endpoint e;
        std::memcpy(&e.storage_, found->ai_addr, found->ai_addrlen);
        e.length_ = found->ai_addrlen;
        ::freeaddrinfo(found);
        e.set_port(port);
        return e;
    }

    // "host:port" or "[v6]:port", split: the host (without brackets) and the port. The one place
    // that reads HOST:PORT. Throws std::invalid_argument saying what was expected.
    struct host_port {
        std::string_view host;
        std::uint16_t port = 0;
    };
    static host_port split(std::string_view text) {
        std::string_view host, port;
        if (!text.empty() && text.front() == '[') {
            auto close = text.find(']');
            if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
                throw std::invalid_argument(
                    fmt::format("address '{}': expected '[ipv6]:port'", text));
            host = text.substr(1, close - 1);
            port = text.substr(close + 2);
        } else {
            auto colon = text.rfind(':');
            if (colon == std::string_view::npos)
                throw std::invalid_argument(fmt::format("address '{}': expected 'host:port'", text));
            host = text.substr(0, colon);
            port = text.substr(colon + 1);
        }
        return {host, parse_port(port, text)};
    }

    // "host:port", "[v6]:port", resolved. Throws std::invalid_argument saying what was expected.
    static endpoint parse(std::string_view text) {
        const auto [host, port] = split(text);
        return resolve(host, port);
    }

    static std::uint16_t parse_port(std::string_view port, std::string_view context) {
        unsigned value = 0;
        if (port.empty() || port.size() > 5)
            throw std::invalid_argument(
                fmt::format("address '{}': expected a port from 0 to 65535", context));
        for (char c : port) {
            if (c < '0' || c > '9')
                throw std::invalid_argument(
                    fmt::format("address '{}': expected a port from 0 to 65535", context));
            value = value * 10 + static_cast<unsigned>(c - '0');
        }
        if (value > 65535)
            throw std::invalid_argument(
                fmt::format("address '{}': expected a port from 0 to 65535", context));
        return static_cast<std::uint16_t>(value);
    }

    [[nodiscard]] int family() const noexcept { return storage_.ss_family; }
    [[nodiscard]] const sockaddr* data() const noexcept {
        return reinterpret_cast<const sockaddr*>(&storage_);
    }
    [[nodiscard]] sockaddr* data() noexcept { return reinterpret_cast<sockaddr*>(&storage_); }
    [[nodiscard]] socklen_t size() const noexcept { return length_; }
    void set_size(socklen_t length) noexcept { length_ = length; }

    [[nodiscard]] std::uint16_t port() const noexcept {
        if (family() == AF_INET6)
            return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
        return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
    }
    void set_port(std::uint16_t port) noexcept {
        if (family() == AF_INET6)
            reinterpret_cast<sockaddr_in6*>(&storage_)->sin6_port = htons(port);
        else
            reinterpret_cast<sockaddr_in*>(&storage_)->sin_port = htons(port);
    }

    [[nodiscard]] std::string host() const {
        char text[INET6_ADDRSTRLEN] = {};
        if (family() == AF_INET6)
            ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr,
                        text, sizeof text);
        else if (family() == AF_INET)
            ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr, text,
                        sizeof text);
        return text;
    }

    [[nodiscard]] std::string to_string() const {
        if (family() == AF_INET6) return fmt::format("[{}]:{}", host(), port());
        if (family() == AF_INET) return fmt::format("{}:{}", host(), port());
        return "(no address)";
    }

private:
    sockaddr_storage storage_;
    socklen_t length_ = 0;
};

}  // namespace dhtkit::net
