#pragma once
// A snapshot of the write-ahead log's folder (store/write_ahead_log.hpp): snapshot.<G>, every
// record the owner had when generation G began, written whole. It is written under a temporary
// name, synced, renamed into place and the folder synced; only then are the files of older
// generations removed. A crash at any point leaves either the old snapshot and every log after
// it, or the new snapshot and the logs after it: both replay to everything that was acknowledged
// (records apply by version, so a record seen twice does no harm).

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "dhtkit/net/unique_fd.hpp"
#include "dhtkit/store/log_files.hpp"
#include "dhtkit/store/log_format.hpp"

namespace dhtkit::snapshot {

using entry_fn = std::function<void(std::string_view key, std::string_view entry)>;

// Writes snapshot.<g> in `dir` from `source` (which calls its argument for every record), then
// removes the logs and snapshots of the generations before g. Returns how many records it holds.
// Throws storage_error (or a filesystem error) when it cannot; the older files then stand.
// `before_rename`: a test's hook, called once the snapshot is synced and before its rename.
inline std::uint64_t write(const std::filesystem::path& dir, std::uint64_t g,
                           const std::function<void(const entry_fn&)>& source, const std::function<void()>& before_rename) {
    const auto final_path = log_files::snapshot_path(dir, g);
    const auto temporary = std::filesystem::path(final_path.string() + ".tmp");
    std::uint64_t records = 0;
    net::unique_fd fd(::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd) throw storage_error(fmt::format("{}: {}", temporary.string(), std::strerror(errno)));
    std::string buffer(snapshot_magic);
    bool written = true;
    source([&](std::string_view key, std::string_view entry) {
        append_log_record(buffer, key, entry);
        ++records;
        if (buffer.size() >= (1u << 20)) {
            written = written && net::write_all(fd.get(), buffer);
            buffer.clear();
        }
    });
    written = written && net::write_all(fd.get(), buffer) && ::fdatasync(fd.get()) == 0;
    if (!written) throw storage_error(fmt::format("{}: {}", temporary.string(), std::strerror(errno)));
    fd.reset();
    if (before_rename) before_rename();
    std::filesystem::rename(temporary, final_path);
    if (!log_files::sync_folder(dir)) throw storage_error(fmt::format("{}: cannot sync the folder", dir.string()));
    // Now the new snapshot and the logs from g on hold everything: the rest can go.
    for (auto old : log_files::generations(dir, "log."))
        if (old < g) std::filesystem::remove(log_files::log_path(dir, old));
    for (auto old : log_files::generations(dir, "snapshot."))
        if (old < g) std::filesystem::remove(log_files::snapshot_path(dir, old));
    return records;
}

}  // namespace dhtkit::snapshot
