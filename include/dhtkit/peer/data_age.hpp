#pragma once
// How old the data a node kept (a log) may be when it starts. A node away longer than the
// tombstone purge period may hold values the others deleted and have since forgotten the delete
// of: started as it is, it would serve them and offer them back. So it does not start; it says
// why and the way out. The moment it last knew itself up to date is kept in DATA/confirmed_at,
// noted (written aside, then renamed) while nothing it serves is unconfirmed.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <system_error>

#include <fmt/format.h>

#include "dhtkit/peer/settings.hpp"

namespace dhtkit::data_age {

[[nodiscard]] inline long long unix_seconds_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Throws settings_error when `data_dir` was last confirmed longer than `period` ago (0: never
// refuses). A folder never confirmed (a first start) is taken as it is.
inline void refuse_if_older_than(const std::filesystem::path& data_dir, std::chrono::seconds period, std::uint64_t id) {
    if (period.count() == 0) return;
    std::ifstream in(data_dir / "confirmed_at");
    long long at = 0;
    if (!(in >> at)) return;
    const auto age = unix_seconds_now() - at;
    if (age <= period.count()) return;
    throw settings_error(fmt::format(
        "peer {}: its data was last confirmed by the other holders {} s ago, longer than [replication] "
        "tombstone_purge_s = {}: it may hold values deleted since, whose deletes the others have forgotten. Move "
        "{} away to start it empty (it catches up from the others), or raise tombstone_purge_s if no delete "
        "was purged meanwhile",
        id, age, period.count(), data_dir.string()));
}

// Notes that `data_dir` is up to date now.
inline void note_confirmed(const std::filesystem::path& data_dir) {
    const auto file = data_dir / "confirmed_at";
    const auto temp = data_dir / "confirmed_at.new";
    {
        std::ofstream out(temp, std::ios::trunc);
        out << unix_seconds_now() << "\n";
        if (!out) return;
    }
    std::error_code ec;
    std::filesystem::rename(temp, file, ec);
}

}  // namespace dhtkit::data_age
