#pragma once
// The files a cluster's secrets are kept in ([security] of the cluster file): regular files that
// only their owner can read.

#include <sys/stat.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>

#include "dhtkit/app/config_reader.hpp"
#include "dhtkit/protocol/auth.hpp"

namespace dhtkit::detail {

// The content of a file that holds a secret, which must be a regular file that only its owner
// can read: a secret that others on the host can read is no secret.
inline std::string read_secret_file(const std::filesystem::path& file, const std::filesystem::path& source,
                                    std::string_view key) {
    struct stat st {};
    if (::stat(file.c_str(), &st) != 0)
        throw config_error(fmt::format("{}: {}: cannot read {}: {}", source.string(), key, file.string(), std::strerror(errno)));
    if (!S_ISREG(st.st_mode))
        throw config_error(fmt::format("{}: {}: {} is not a regular file", source.string(), key, file.string()));
    if (st.st_mode & 077)
        throw config_error(fmt::format("{}: {}: {} can be read by others (mode {:04o}): chmod 600 it", source.string(),
                                       key, file.string(), st.st_mode & 07777));
    std::ifstream in(file, std::ios::binary);
    std::string secret((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof())
        throw config_error(fmt::format("{}: {}: cannot read {}", source.string(), key, file.string()));
    return secret;
}

// The key made from a cluster secret file (at least 16 bytes).
inline std::shared_ptr<const protocol::cluster_key> read_cluster_secret(const std::filesystem::path& file,
                                                                        const std::filesystem::path& source) {
    auto secret = read_secret_file(file, source, "security.cluster_secret_file");
    if (secret.size() < 16)
        throw config_error(fmt::format("{}: security.cluster_secret_file: {} holds {} bytes; a secret needs at least 16",
                                       source.string(), file.string(), secret.size()));
    // Long but made of a few bytes over and over (16 times 'a') is a secret a guess finds.
    std::array<bool, 256> seen{};
    std::size_t distinct = 0;
    for (unsigned char ch : secret) distinct += !std::exchange(seen[ch], true);
    if (distinct < 8) {
        sodium_memzero(secret.data(), secret.size());
        throw config_error(fmt::format("{}: security.cluster_secret_file: {} holds only {} different bytes; make a "
                                       "secret that cannot be guessed, e.g. head -c 32 /dev/urandom > {}",
                                       source.string(), file.string(), distinct, file.string()));
    }
    auto key = std::make_shared<protocol::cluster_key>(protocol::derive_key(secret));
    sodium_memzero(secret.data(), secret.size());
    return key;
}

// A client password file: its first line.
inline std::string read_client_password(const std::filesystem::path& file, const std::filesystem::path& source) {
    auto text = read_secret_file(file, source, "security.client_password_file");
    auto password = text.substr(0, text.find_first_of("\r\n"));
    sodium_memzero(text.data(), text.size());
    if (password.empty())
        throw config_error(fmt::format("{}: security.client_password_file: {} holds no password on its first line",
                                       source.string(), file.string()));
    return password;
}

}  // namespace dhtkit::detail
