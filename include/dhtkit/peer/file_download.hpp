#pragma once
// Downloads one file from one holder: ask for it (fetch), read its size and checksum, stream the
// bytes into a temporary file beside the destination while hashing them, and rename it into place
// only when every byte arrived and the checksum matches — both the holder's and the registry
// entry's, so that what arrives is what `search` promised: a file changed on its holder after it
// was registered is refused. A holder that vanishes mid-transfer leaves no partial file behind.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <stop_token>
#include <vector>

#include <fmt/format.h>

#include "dhtkit/cluster/handshake.hpp"
#include "dhtkit/net/unique_fd.hpp"
#include "dhtkit/protocol/messages.hpp"
#include "dhtkit/protocol/rpc.hpp"
#include "dhtkit/store/checksum.hpp"

namespace dhtkit {

// Called as bytes arrive: (received, total).
using download_progress = std::function<void(std::uint64_t, std::uint64_t)>;

struct download_result {
    protocol::status code = protocol::status::ok;
    std::string error;
    std::uint64_t size = 0;
    std::uint64_t checksum = 0;
    std::uint64_t from_peer = 0;
    bool here = false;  // the failure is on this side (the destination, a cancel): no other holder would do better

    [[nodiscard]] bool ok() const noexcept { return code == protocol::status::ok; }
};

// Why a download must not go to `dest`, said before the first byte moves; none when it may. A
// file that is there already is replaced only when it is writable (by this user), or when
// `replace_read_only` says so (the prompt's `obtain ... --force`).
[[nodiscard]] inline std::optional<std::string> destination_refusal(const std::filesystem::path& dest,
                                                                    bool replace_read_only = false) {
    if (dest.empty() || !dest.has_filename()) return fmt::format("'{}' names no file to write", dest.string());
    const auto folder = dest.parent_path().empty() ? std::filesystem::path(".") : dest.parent_path();
    std::error_code ec;
    if (!std::filesystem::is_directory(folder, ec)) return fmt::format("no such folder {}", folder.string());
    if (::access(folder.c_str(), W_OK | X_OK) != 0) return fmt::format("cannot write in folder {}", folder.string());
    const auto st = std::filesystem::symlink_status(dest, ec);
    if (ec || !std::filesystem::exists(st)) return std::nullopt;
    if (std::filesystem::is_directory(st)) return fmt::format("{} is a folder", dest.string());
    if (!std::filesystem::is_regular_file(st)) return fmt::format("{} is there and is not a regular file", dest.string());
    // Read-only: no one may write it (root too, whom access() would let), or not this user.
    const bool read_only = (st.permissions() & (std::filesystem::perms::owner_write | std::filesystem::perms::group_write |
                                                std::filesystem::perms::others_write)) == std::filesystem::perms::none ||
                           ::access(dest.c_str(), W_OK) != 0;
    if (read_only && !replace_read_only)
        return fmt::format("{} is there and read-only: not replaced (--force replaces it)", dest.string());
    return std::nullopt;
}

// A file that is removed unless commit() renames it into place.
class temp_file {
public:
    explicit temp_file(const std::filesystem::path& beside) {
        pattern_ = (beside.parent_path() / ("." + beside.filename().string() + ".part-XXXXXX")).string();
        fd_.reset(::mkstemp(pattern_.data()));
        if (!fd_) throw std::system_error(errno, std::generic_category(), "creating " + pattern_);
    }
    temp_file(const temp_file&) = delete;
    temp_file& operator=(const temp_file&) = delete;
    ~temp_file() {
        if (!committed_) ::unlink(pattern_.c_str());
    }
    [[nodiscard]] int fd() const noexcept { return fd_.get(); }
    bool commit(const std::filesystem::path& to) {
        fd_.reset();
        committed_ = ::rename(pattern_.c_str(), to.c_str()) == 0;
        return committed_;
    }

private:
    std::string pattern_;
    net::unique_fd fd_;
    bool committed_ = false;
};

// `from` is the registry's entry for the holder; `hello`, what to say first (the map digest, and
// the cluster's secret and client password where there are some). A stop requested through
// `stop` ends the transfer at the next block (or wait's end) and leaves no file behind.
inline download_result download_file(const protocol::holder& from, std::string_view name,
                                     const std::filesystem::path& dest, std::chrono::milliseconds connect_timeout,
                                     std::chrono::milliseconds io_timeout, const download_progress& progress = {},
                                     const protocol::hello_request& hello = {}, std::stop_token stop = {}) {
    using protocol::status;
    const std::string who = fmt::format("peer {} ({}:{})", from.peer_id, from.host, from.port);
    auto fail = [&](status code, std::string why) {
        return download_result{code, fmt::format("obtain '{}' from {}: {}", name, who, why), 0, 0, from.peer_id};
    };
    protocol::rpc_stream rpc;
    try {
        rpc = protocol::rpc_stream::connect(from.host, from.port, protocol::frame_limits(protocol::max_file_name_bytes, 0),
                                            connect_timeout);
    } catch (const std::exception& e) {
        return fail(status::unavailable, e.what());
    }
    if (auto h = say_hello(rpc, hello, io_timeout); !h.agreed())
        return fail(h.how == hello_result::outcome::mismatch ? status::refused : status::unavailable, h.why);
    if (rpc.send({protocol::opcode::fetch, 0, status::ok, 1, 0, 0}, name, {}, io_timeout) != protocol::rpc_status::ok)
        return fail(status::unavailable, "the request could not be sent");

    // The answer: a frame whose value is the size and checksum, then exactly `size` raw bytes.
    protocol::frame_view answer;
    if (auto got = rpc.receive(answer, io_timeout); got != protocol::rpc_status::ok)
        return fail(got == protocol::rpc_status::bad_frame ? status::bad_request : status::unavailable,
                    fmt::format("no answer: {}", to_string(got)));
    if (answer.h.code != status::ok)
        return fail(answer.h.code, fmt::format("{}{}{}", to_string(answer.h.code), answer.value.empty() ? "" : ": ", answer.value));
    auto meta = protocol::decode_file_meta(answer.value);
    if (!meta) return fail(status::bad_request, "malformed size and checksum");
    if (meta->size != from.size || meta->checksum != from.checksum)
        return fail(status::unavailable,
                    fmt::format("its file changed since it was registered ({} bytes, checksum {:016x}; now {} bytes, "
                                "checksum {:016x})",
                                from.size, from.checksum, meta->size, meta->checksum));

    std::optional<temp_file> part;
    if (auto folder = dest.parent_path(); !folder.empty() && !std::filesystem::is_directory(folder))
        return download_result{status::refused, fmt::format("obtain '{}': cannot write {}: no such folder {}", name,
                                                            dest.string(), folder.string()),
                               0, 0, from.peer_id, true};
    try {
        part.emplace(dest);
    } catch (const std::exception& e) {
        return download_result{status::internal_error, fmt::format("obtain '{}': cannot write beside {}: {}", name,
                                                                   dest.string(), std::strerror(errno)),
                               0, 0, from.peer_id, true};
    }
    checksum_stream hash;
    std::vector<char> block(1 << 20);
    std::uint64_t received = 0;
    while (received < meta->size) {
        if (stop.stop_requested()) {
            auto r = fail(status::unavailable, fmt::format("cancelled after {} of {} bytes", received, meta->size));
            r.here = true;
            return r;
        }
        auto want = static_cast<std::size_t>(std::min<std::uint64_t>(block.size(), meta->size - received));
        auto got = rpc.receive_raw(std::as_writable_bytes(std::span(block.data(), want)), io_timeout);
        if (got.status == net::io_status::timed_out)
            return fail(status::unavailable, fmt::format("stalled after {} of {} bytes", received, meta->size));
        if (!got) return fail(status::unavailable, fmt::format("the holder went away after {} of {} bytes", received, meta->size));
        hash.update(block.data(), got.bytes);
        if (!net::write_all(part->fd(), std::string_view(block.data(), got.bytes))) {
            auto r = fail(status::internal_error, fmt::format("writing {}: {}", dest.string(), std::strerror(errno)));
            r.here = true;
            return r;
        }
        received += got.bytes;
        if (progress) progress(received, meta->size);
    }
    const std::uint64_t sum = hash.digest();
    if (sum != meta->checksum)
        return fail(status::unavailable, fmt::format("checksum mismatch: got {:016x}, the holder said {:016x}", sum, meta->checksum));
    if (stop.stop_requested()) {
        auto r = fail(status::unavailable, "cancelled");
        r.here = true;
        return r;
    }
    if (::fchmod(part->fd(), static_cast<mode_t>(meta->mode)) != 0)
        return fail(status::internal_error, fmt::format("setting the mode of {}: {}", dest.string(), std::strerror(errno)));
    if (!part->commit(dest))
        return fail(status::internal_error, fmt::format("renaming into {}: {}", dest.string(), std::strerror(errno)));
    return {status::ok, {}, meta->size, sum, from.peer_id};
}

}  // namespace dhtkit
