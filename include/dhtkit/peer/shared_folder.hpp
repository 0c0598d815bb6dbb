#pragma once
// A peer's shared folder: the only files its file server will serve. Names are plain file names;
// anything with a '/', a '..', or a path that resolves outside the folder (through a symlink, say)
// is refused before any file is opened.

#include <fcntl.h>
#include <sys/stat.h>

#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>


#include "dhtkit/net/unique_fd.hpp"
#include "dhtkit/store/checksum.hpp"

namespace dhtkit {

inline constexpr std::size_t max_file_name = 255;

// True for a name that can only mean a file directly inside the folder.
[[nodiscard]] inline bool is_plain_file_name(std::string_view name) noexcept {
    if (name.empty() || name.size() > max_file_name || name == "." || name == "..") return false;
    for (char c : name)
        if (c == '/' || c == '\0' || c == '\\') return false;
    return true;
}

// XXH3-64 of a whole file, read in large blocks.
[[nodiscard]] inline std::optional<std::uint64_t> file_checksum(int fd) {
    checksum_stream hash;
    std::vector<char> block(1 << 20);
    off_t at = 0;
    for (;;) {
        ssize_t n = ::pread(fd, block.data(), block.size(), at);
        if (n < 0) {
            if (errno == EINTR) continue;
            return std::nullopt;
        }
        if (n == 0) break;
        hash.update(block.data(), static_cast<std::size_t>(n));
        at += n;
    }
    return hash.digest();
}

// What tells a changed file from the one that was opened before: its size and modification time.
struct file_stamp {
    std::uint64_t size = 0;
    std::int64_t sec = 0;
    std::int64_t nsec = 0;
    friend bool operator==(const file_stamp&, const file_stamp&) = default;
};

class shared_folder {
public:
    struct open_file {
        net::unique_fd fd;
        std::uint64_t size = 0;
        std::uint64_t checksum = 0;
        file_stamp stamp;
        std::uint32_t mode = 0644;  // permission bits
    };

    enum class refusal { none, bad_name, too_long, outside, missing, unreadable };

    // Why `name` is not a plain file name (none when it is).
    [[nodiscard]] static refusal check_name(std::string_view name) noexcept {
        if (name.size() > max_file_name) return refusal::too_long;
        return is_plain_file_name(name) ? refusal::none : refusal::bad_name;
    }

    explicit shared_folder(std::filesystem::path root) : root_(std::move(root)) {
        std::filesystem::create_directories(root_);
        root_ = std::filesystem::canonical(root_);
    }

    [[nodiscard]] const std::filesystem::path& root() const noexcept { return root_; }

    // Opens NAME for reading, with its size and checksum (cached while size and mtime stay the
    // same, so a popular file is not re-read for every download).
    std::optional<open_file> open(std::string_view name, refusal* why = nullptr) {
        auto fail = [&](refusal r) -> std::optional<open_file> {
            if (why) *why = r;
            return std::nullopt;
        };
        if (auto r = check_name(name); r != refusal::none) return fail(r);
        std::error_code ec;
        auto path = std::filesystem::weakly_canonical(root_ / std::string(name), ec);
        if (ec || path.parent_path() != root_) return fail(refusal::outside);
        // Without blocking: opening a FIFO for reading would wait for a writer, and hold the file
        // service's thread meanwhile. Anything but a regular file is refused below.
        net::unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
        if (!fd) return fail(errno == ENOENT ? refusal::missing : refusal::unreadable);
        struct stat st {};
        if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) return fail(refusal::unreadable);
        open_file f{std::move(fd), static_cast<std::uint64_t>(st.st_size), 0,
                    {static_cast<std::uint64_t>(st.st_size), st.st_mtim.tv_sec, st.st_mtim.tv_nsec},
                    static_cast<std::uint32_t>(st.st_mode & 0777)};
        const file_stamp now = f.stamp;
        {
            std::lock_guard lock(mutex_);
            if (auto it = checksums_.find(std::string(name)); it != checksums_.end() && it->second.first == now) {
                f.checksum = it->second.second;
                return f;
            }
        }
        auto sum = file_checksum(f.fd.get());
        if (!sum) return fail(refusal::unreadable);
        f.checksum = *sum;
        std::lock_guard lock(mutex_);
        checksums_[std::string(name)] = {now, *sum};
        return f;
    }

    // The plain files in the folder now.
    [[nodiscard]] std::vector<std::string> list() const {
        std::vector<std::string> names;
        for (const auto& e : std::filesystem::directory_iterator(root_))
            if (e.is_regular_file() && is_plain_file_name(e.path().filename().string()))
                names.push_back(e.path().filename().string());
        return names;
    }

    [[nodiscard]] static std::string_view describe(refusal r) noexcept {
        switch (r) {
            case refusal::none: return "ok";
            case refusal::bad_name: return "not a plain file name (it must not be empty, '.' or '..', nor hold '/', '\\' or NUL)";
            case refusal::too_long: return "a file name is at most 255 bytes";
            case refusal::outside: return "resolves outside the shared folder";
            case refusal::missing: return "no such file in the shared folder";
            case refusal::unreadable: return "not a readable regular file";
        }
        return "refused";
    }

private:
    std::filesystem::path root_;
    std::mutex mutex_;
    std::unordered_map<std::string, std::pair<file_stamp, std::uint64_t>> checksums_;  // guarded by mutex_
};

}  // namespace dhtkit
