#pragma once
// Flag parsing for the example programs, through CLI11: the generated --help, numbers checked as
// numbers ("--peer 1.7" is refused, not read as 1), unknown flags refused.

#include <algorithm>
#include <cstdio>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

namespace examples {

// A peer id: digits only, so that "-1" is refused as what it is instead of wrapping round to
// 18446744073709551615 in an unsigned option.
inline const CLI::Validator peer_id{
    [](std::string& s) {
        const bool digits = !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
        return digits ? std::string() : "a peer id is a whole number from 0 up, not '" + s + "'";
    },
    "ID"};

// Parses argv into `app`. An exit status when the program should stop here: 0 after --help, 2
// (with the reason on stderr) for flags that do not parse.
inline std::optional<int> parse_flags(CLI::App& app, int argc, char** argv) {
    try {
        app.parse(argc, argv);
        return std::nullopt;
    } catch (const CLI::CallForHelp&) {
        std::fputs(app.help().c_str(), stdout);
        return 0;
    } catch (const CLI::ParseError& e) {
        std::fprintf(stderr, "error: %s (see --help)\n", e.what());
        return 2;
    }
}

}  // namespace examples
