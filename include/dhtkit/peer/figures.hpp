#pragma once
// A peer's figures as data: named, typed values gathered from its parts when asked (peer.hpp,
// stats_figures) and turned into text only at the edge — `name=value` lines for the `stats`
// request, Redis's INFO sections on the RESP front (front/resp_admin.hpp) — so that no reader
// parses a report back.

#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <fmt/format.h>

namespace dhtkit {

class figures {
public:
    // A real number and the places it is shown with.
    struct decimal {
        double value = 0;
        int places = 3;
        bool operator==(const decimal&) const = default;
    };
    using value = std::variant<std::int64_t, std::uint64_t, decimal, std::string>;

    template <std::integral T>
    void add(std::string_view name, T v) {
        if constexpr (std::is_signed_v<T>) all_.emplace_back(std::string(name), static_cast<std::int64_t>(v));
        else all_.emplace_back(std::string(name), static_cast<std::uint64_t>(v));
    }
    void add(std::string_view name, double v, int places) { all_.emplace_back(std::string(name), decimal{v, places}); }
    void add(std::string_view name, std::string v) { all_.emplace_back(std::string(name), std::move(v)); }
    void add(std::string_view name, std::string_view v) { add(name, std::string(v)); }
    void add(std::string_view name, const char* v) { add(name, std::string(v)); }

    // The first figure of that name, or null.
    [[nodiscard]] const value* find(std::string_view name) const noexcept {
        for (const auto& [n, v] : all_)
            if (n == name) return &v;
        return nullptr;
    }
    [[nodiscard]] const std::vector<std::pair<std::string, value>>& all() const noexcept { return all_; }

    [[nodiscard]] static std::string text(const value& v) {
        return std::visit(
            [](const auto& x) -> std::string {
                using T = std::decay_t<decltype(x)>;
                if constexpr (std::is_same_v<T, decimal>) return fmt::format("{:.{}f}", x.value, x.places);
                else if constexpr (std::is_same_v<T, std::string>) return x;
                else return fmt::format("{}", x);
            },
            v);
    }
    // The `stats` reply: a "name=value" line each, in the order added.
    [[nodiscard]] std::string lines() const {
        std::string out;
        for (const auto& [n, v] : all_) {
            out += n;
            out += '=';
            out += text(v);
            out += '\n';
        }
        return out;
    }

private:
    std::vector<std::pair<std::string, value>> all_;
};

}  // namespace dhtkit
