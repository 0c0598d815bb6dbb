#pragma once
// Where the library's own lines go, and at which level: info for events (caught up, a member
// joined), warning for what needs a look (a request refused for its signature, a member taken for
// dead, a copy that failed), error for failures. A program gives a sink that takes both the level
// and the words; one that takes only the words gets every line. Without a sink the library
// writes to stderr under its own name ("dhtkit: warning: ...").

#include <concepts>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace dhtkit {

enum class log_level : std::uint8_t { debug, info, warning, error };

[[nodiscard]] constexpr std::string_view to_string(log_level l) noexcept {
    switch (l) {
        case log_level::debug: return "debug";
        case log_level::info: return "info";
        case log_level::warning: return "warning";
        case log_level::error: return "error";
    }
    return "info";
}

// "debug", "info", "warning" (or "warn"), "error": the level, or none.
[[nodiscard]] constexpr std::optional<log_level> log_level_named(std::string_view name) noexcept {
    if (name == "debug") return log_level::debug;
    if (name == "info") return log_level::info;
    if (name == "warning" || name == "warn") return log_level::warning;
    if (name == "error") return log_level::error;
    return std::nullopt;
}

class logger {
public:
    using sink = std::function<void(log_level, std::string_view)>;

    // Nowhere: lines are dropped.
    logger() = default;
    logger(std::nullptr_t) noexcept {}
    template <class F>
        requires std::invocable<F&, log_level, std::string_view>
    logger(F f) : sink_(std::move(f)) {}
    // A sink for the words only: it gets every line, whatever its level.
    template <class F>
        requires(!std::invocable<F&, log_level, std::string_view> && std::invocable<F&, const std::string&>)
    logger(F f) : sink_([f = std::move(f)](log_level, std::string_view text) mutable { f(std::string(text)); }) {}

    // stderr, "NAME: LEVEL: words", from `at_least` up.
    [[nodiscard]] static logger to_stderr(std::string name = "dhtkit", log_level at_least = log_level::info) {
        return logger([name = std::move(name), at_least](log_level l, std::string_view text) {
            if (l < at_least) return;
            const auto level = to_string(l);
            std::fprintf(stderr, "%s: %.*s: %.*s\n", name.c_str(), static_cast<int>(level.size()), level.data(),
                         static_cast<int>(text.size()), text.data());
        });
    }

    void operator()(log_level l, std::string_view text) const {
        if (sink_) sink_(l, text);
    }
    // An event: at info.
    void operator()(std::string_view text) const { (*this)(log_level::info, text); }
    void info(std::string_view text) const { (*this)(log_level::info, text); }
    void warning(std::string_view text) const { (*this)(log_level::warning, text); }
    void error(std::string_view text) const { (*this)(log_level::error, text); }

    explicit operator bool() const noexcept { return static_cast<bool>(sink_); }

private:
    sink sink_;
};

}  // namespace dhtkit
