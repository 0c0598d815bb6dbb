#pragma once
// Reading a cluster file's TOML: typed values whose errors name the file, the key and what was
// expected, and the check that the file holds no table or key that no setting reads (with the
// nearest known name, for a typo).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "dhtkit/peer/settings.hpp"

namespace dhtkit {

struct config_error : settings_error {
    using settings_error::settings_error;
};

namespace detail {

class config_reader {
public:
    config_reader(const toml::table& root, std::filesystem::path source)
        : root_(root), source_(std::move(source)), base_(source_.parent_path()) {}

    [[noreturn]] void fail(std::string_view key, std::string_view expected) const {
        throw config_error(fmt::format("{}: key '{}': expected {}", source_.string(), key, expected));
    }

    template <class T>
    T integer(toml::node_view<const toml::node> node, std::string_view key, T low, T high,
              std::optional<T> fallback) const {
        if (!node) {
            if (fallback) return *fallback;
            fail(key, fmt::format("an integer from {} to {} (it is missing)", low, high));
        }
        auto value = node.value<std::int64_t>();
        if (!node.is_integer() || !value || *value < static_cast<std::int64_t>(low) ||
            static_cast<std::uint64_t>(*value) > static_cast<std::uint64_t>(high))
            fail(key, fmt::format("an integer from {} to {}", low, high));
        return static_cast<T>(*value);
    }

    std::string text(toml::node_view<const toml::node> node, std::string_view key) const {
        auto value = node.value<std::string>();
        if (!node.is_string() || !value || value->empty()) fail(key, "a non-empty string");
        return *value;
    }

    std::filesystem::path path(toml::node_view<const toml::node> node, std::string_view key) const {
        std::filesystem::path p = text(node, key);
        return p.is_absolute() ? p : (base_ / p).lexically_normal();
    }

    const toml::table& root() const noexcept { return root_; }

private:
    const toml::table& root_;
    std::filesystem::path source_;
    std::filesystem::path base_;
};

// Every table and key a cluster file may hold; anything else is a mistake worth stopping for
// (`threds`, `[replicaton]`), not a setting to ignore.
struct known_table {
    std::string_view name;
    std::vector<std::string_view> keys;
};
inline const std::vector<known_table>& known_tables() {
    static const std::vector<known_table> tables{
        {"pool", {"threads", "dispatch"}},
        {"limits", {"max_key_bytes", "max_value_bytes", "max_in_flight", "max_output_bytes", "idle_timeout_s"}},
        {"replication", {"backups", "consistency", "max_clock_skew_ms", "policy", "heal_mb_per_s", "min_copies", "tombstone_purge_s"}},
        {"membership", {"probe_interval_ms", "probe_timeout_ms", "suspicion_mult", "indirect_probes", "sync_interval_ms",
                        "gossip_interval_ms", "anti_entropy_s", "leave_on_stop"}},
        {"storage", {"mode", "fsync", "compact_after_mb"}},
        {"resp", {"route"}},
        {"security", {"cluster_secret_file", "client_password_file"}},
        {"supervisor", {"max_restarts", "window_s"}},
        {"peers", {"id", "host", "port", "resp_port", "shared", "data"}},
    };
    return tables;
}

// Levenshtein distance, for "did you mean".
inline std::size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<std::size_t> row(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        std::size_t diagonal = row[0];
        row[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t up = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diagonal = up;
        }
    }
    return row[b.size()];
}

// ", did you mean 'x'?" for the nearest of `names` to `name`, when one is near enough.
inline std::string nearest(std::string_view name, const std::vector<std::string_view>& names, std::string_view prefix) {
    std::string_view best;
    std::size_t best_distance = std::max<std::size_t>(2, name.size() / 3) + 1;
    for (auto n : names)
        if (auto d = edit_distance(name, n); d < best_distance) {
            best = n;
            best_distance = d;
        }
    return best.empty() ? std::string() : fmt::format(" (did you mean '{}{}'?)", prefix, best);
}

// Throws for the first table or key the file has that no setting reads.
inline void check_known(const toml::table& root, const std::filesystem::path& source) {
    std::vector<std::string_view> tables;
    for (const auto& t : known_tables()) tables.push_back(t.name);
    auto check_keys = [&](const toml::table& t, const known_table& spec, const std::string& where) {
        for (const auto& [k, v] : t) {
            if (std::find(spec.keys.begin(), spec.keys.end(), k.str()) != spec.keys.end()) continue;
            throw config_error(fmt::format("{}: unknown key '{}.{}'{}", source.string(), where, k.str(),
                                           nearest(k.str(), spec.keys, std::string(where) + ".")));
        }
    };
    for (const auto& [k, v] : root) {
        auto spec = std::find_if(known_tables().begin(), known_tables().end(),
                                 [&](const known_table& t) { return t.name == k.str(); });
        if (spec == known_tables().end())
            throw config_error(fmt::format("{}: unknown {} '{}'{}", source.string(), v.is_table() ? "table" : "key",
                                           k.str(), nearest(k.str(), tables, "")));
        if (const auto* t = v.as_table()) check_keys(*t, *spec, std::string(k.str()));
        if (const auto* a = v.as_array())
            for (std::size_t i = 0; i < a->size(); ++i)
                if (const auto* t = (*a)[i].as_table()) check_keys(*t, *spec, fmt::format("{}[{}]", k.str(), i));
    }
}

}  // namespace detail

}  // namespace dhtkit
