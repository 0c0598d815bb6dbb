#pragma once
// The replication policies a program offers, by name ([replication] policy): the config reader
// refuses a name the registry lacks (naming those it has), and the program makes its peer type
// from the policy named (examples/peer_main.cpp). A policy's name is its own
// (replication_policy::name); offering another is adding it to the list.

#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>

#include <fmt/format.h>

#include "dhtkit/cluster/replication.hpp"

namespace dhtkit {

template <replication_policy... Policies>
struct policy_registry {
    static_assert(sizeof...(Policies) > 0, "a registry offers at least one policy");

    [[nodiscard]] static constexpr bool knows(std::string_view name) noexcept { return ((Policies::name == name) || ...); }

    // "\"static\" or \"dynamic\"": for an error that says what would do.
    [[nodiscard]] static std::string choices() {
        std::string out;
        std::size_t i = 0;
        ((out += fmt::format("{}\"{}\"", i++ == 0 ? "" : i == sizeof...(Policies) ? " or " : ", ", Policies::name)), ...);
        return out;
    }

    // Whether the policy named follows live membership (false for a name it lacks).
    [[nodiscard]] static constexpr bool follows_membership(std::string_view name) noexcept {
        return ((Policies::name == name && Policies::follows_membership) || ...);
    }

    // Calls f(std::type_identity<P>{}) for the policy P named `name`, which must be known
    // (the config reader checked it), and returns what f returns.
    template <class F>
    static decltype(auto) with(std::string_view name, F&& f) {
        using result = std::invoke_result_t<F, std::type_identity<std::tuple_element_t<0, std::tuple<Policies...>>>>;
        if constexpr (std::is_void_v<result>) {
            (void)((Policies::name == name && (f(std::type_identity<Policies>{}), true)) || ...);
        } else {
            result out{};
            (void)((Policies::name == name && (out = f(std::type_identity<Policies>{}), true)) || ...);
            return out;
        }
    }
};

// What dhtkit-peer and dhtkit-cli offer.
using offered_policies = policy_registry<static_backup, dynamic_backup>;

}  // namespace dhtkit
