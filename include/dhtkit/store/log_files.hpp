#pragma once
// The files of a log folder (store/write_ahead_log.hpp): their names, their generations, reading
// one whole, setting damage aside, opening the log appended to, and syncing the folder.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "dhtkit/net/unique_fd.hpp"
#include "dhtkit/store/log_format.hpp"

namespace dhtkit {

// A log that cannot be opened as it is, or a disk that refuses a write: says which file and where.
struct storage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

namespace log_files {

inline std::filesystem::path log_path(const std::filesystem::path& dir, std::uint64_t g) {
    return dir / fmt::format("log.{}", g);
}
inline std::filesystem::path snapshot_path(const std::filesystem::path& dir, std::uint64_t g) {
    return dir / fmt::format("snapshot.{}", g);
}

// The generations of the files named `prefix`.<G> in `dir`, oldest first.
inline std::vector<std::uint64_t> generations(const std::filesystem::path& dir, std::string_view prefix) {
    std::vector<std::uint64_t> out;
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
        const auto name = e.path().filename().string();
        if (!name.starts_with(prefix) || name.size() == prefix.size()) continue;
        const auto digits = std::string_view(name).substr(prefix.size());
        if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }) || digits.size() > 18)
            continue;
        out.push_back(std::stoull(std::string(digits)));
    }
    std::sort(out.begin(), out.end());
    return out;
}

inline std::string read_whole(const std::filesystem::path& p) {
    net::unique_fd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
    struct stat st {};
    if (!fd || ::fstat(fd.get(), &st) != 0)
        throw storage_error(fmt::format("{}: cannot read: {}", p.string(), std::strerror(errno)));
    std::string bytes(static_cast<std::size_t>(st.st_size), '\0');
    std::size_t got = 0;
    while (got < bytes.size()) {
        const auto n = ::read(fd.get(), bytes.data() + got, bytes.size() - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw storage_error(fmt::format("{}: cannot read: {}", p.string(), std::strerror(errno)));
        if (n == 0) break;  // shorter than it was a moment ago: what is there is what counts
        got += static_cast<std::size_t>(n);
    }
    bytes.resize(got);
    return bytes;
}

// Moves the bytes of `file` from `at` on into <file>.corrupt-at-<at>, and cuts the file there.
inline std::string set_aside(const std::filesystem::path& file, const std::string& bytes, std::size_t at) {
    const auto aside = std::filesystem::path(file.string() + fmt::format(".corrupt-at-{}", at));
    {
        std::ofstream out(aside, std::ios::binary | std::ios::trunc);
        out.write(bytes.data() + at, static_cast<std::streamsize>(bytes.size() - at));
        if (!out) throw storage_error(fmt::format("{}: cannot write: {}", aside.string(), std::strerror(errno)));
    }
    std::filesystem::resize_file(file, at);
    return aside.string();
}

// Whether `dir`'s entries (a rename, a new file) are on the disk.
inline bool sync_folder(const std::filesystem::path& dir) {
    net::unique_fd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    return d && ::fsync(d.get()) == 0;
}

// log.<g> in `dir`, open for appending; a new one is given its header first (synced, with the
// folder). `bytes`: its size.
struct append_file {
    net::unique_fd fd;
    std::uint64_t bytes = 0;
};
inline append_file open_log(const std::filesystem::path& dir, std::uint64_t g) {
    const auto file = log_path(dir, g);
    net::unique_fd fd(::open(file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
    if (!fd) throw storage_error(fmt::format("{}: cannot open for writing: {}", file.string(), std::strerror(errno)));
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) throw storage_error(fmt::format("{}: {}", file.string(), std::strerror(errno)));
    auto size = static_cast<std::uint64_t>(st.st_size);
    if (size == 0) {
        if (!net::write_all(fd.get(), log_magic) || ::fdatasync(fd.get()) != 0 || !sync_folder(dir))
            throw storage_error(fmt::format("{}: cannot write its header: {}", file.string(), std::strerror(errno)));
        size = log_header_size;
    }
    return {std::move(fd), size};
}

}  // namespace log_files

}  // namespace dhtkit
