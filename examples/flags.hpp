#pragma once
// A small flag reader shared by the example programs: "--name value", "--name=value", "--switch".

#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

namespace examples {

class flags {
public:
    flags(int argc, char** argv) {
        for (int i = 1; i < argc; ++i) args_.emplace_back(argv[i]);
    }

    // Takes `--name` (a switch) out of the arguments.
    bool take_switch(std::string_view name) {
        for (auto it = args_.begin(); it != args_.end(); ++it)
            if (*it == name) {
                args_.erase(it);
                return true;
            }
        return false;
    }

    // Takes `--name VALUE` or `--name=VALUE` out of the arguments.
    std::optional<std::string> take(std::string_view name) {
        for (auto it = args_.begin(); it != args_.end(); ++it) {
            if (*it == name) {
                if (it + 1 == args_.end()) throw std::invalid_argument(fmt::format("{} needs a value", name));
                std::string v = *(it + 1);
                args_.erase(it, it + 2);
                return v;
            }
            if (it->starts_with(std::string(name) + "=")) {
                std::string v = it->substr(name.size() + 1);
                args_.erase(it);
                return v;
            }
        }
        return std::nullopt;
    }

    template <class T>
    std::optional<T> take_number(std::string_view name) {
        auto v = take(name);
        if (!v) return std::nullopt;
        char* end = nullptr;
        errno = 0;
        double d = std::strtod(v->c_str(), &end);
        if (end == v->c_str() || *end != '\0' || errno != 0 || d < 0)
            throw std::invalid_argument(fmt::format("{} expects a non-negative number, got '{}'", name, *v));
        return static_cast<T>(d);
    }

    // What is left after the flags were taken. An unknown --flag before the first word is an error.
    std::vector<std::string> rest(bool allow_words) const {
        for (const auto& a : args_) {
            if (a.starts_with("--")) throw std::invalid_argument(fmt::format("unknown flag '{}' (see --help)", a));
            if (!allow_words) throw std::invalid_argument(fmt::format("unexpected argument '{}' (see --help)", a));
            break;
        }
        return args_;
    }

private:
    std::vector<std::string> args_;
};

}  // namespace examples
