#pragma once
// A peer that is not in the cluster file joins a live cluster: its settings, and a node id kept
// across restarts.

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>

#include "dhtkit/app/config_reader.hpp"
#include "dhtkit/net/address.hpp"
#include "dhtkit/peer/settings.hpp"

namespace dhtkit {

// A peer that is not in the file joins a live cluster (dhtkit-peer --join JOIN --listen LISTEN
// --dir DIR): it is added to `cluster` as a peer that is not a seed, its shared and data folders
// inside DIR. Its node id is chosen once, at random above every id a file may give (2^62), and
// kept in DIR/data/node_id, so that a restart is the same node. Returns the id.
inline std::uint64_t add_joining_peer(cluster_settings& cluster, const std::string& join, const std::string& listen,
                                      const std::filesystem::path& dir) {
    const std::string where = cluster.source.empty() ? std::string("the cluster settings") : cluster.source.string();
    if (!cluster.live_membership)
        throw config_error(fmt::format("{}: --join needs [replication] policy = \"dynamic\"", where));
    auto split = [](const std::string& text, std::string_view flag) {
        net::endpoint::host_port hp;
        try {
            hp = net::endpoint::split(text);
        } catch (const std::invalid_argument& e) {
            throw config_error(fmt::format("{} {}: {}", flag, text, e.what()));
        }
        if (hp.host.empty() || hp.port == 0)
            throw config_error(fmt::format("{} {}: expected HOST:PORT, the port a number from 1 to 65535", flag, text));
        return std::pair{std::string(hp.host), hp.port};
    };
    (void)split(join, "--join");
    auto [host, port] = split(listen, "--listen");
    peer_settings p;
    p.host = host;
    p.port = port;
    p.seed = false;
    const auto base = std::filesystem::absolute(dir);
    p.shared_dir = base / "shared";
    p.data_dir = base / "data";
    std::filesystem::create_directories(p.shared_dir);
    std::filesystem::create_directories(p.data_dir);
    const auto id_file = p.data_dir / "node_id";
    if (std::ifstream in(id_file); in) {
        if (!(in >> p.id) || p.id < (std::uint64_t{1} << 62))
            throw config_error(fmt::format("{}: not a node id this program wrote (remove it to start as a new node)",
                                           id_file.string()));
    } else {
        std::random_device rd;
        p.id = (std::uint64_t{1} << 62) | ((std::uint64_t{rd()} << 32 | rd()) & ((std::uint64_t{1} << 62) - 1));
        std::ofstream out(id_file);
        out << p.id << "\n";
        if (!out.flush()) throw config_error(fmt::format("{}: cannot write the node id", id_file.string()));
    }
    for (const auto& q : cluster.peers)
        if (q.host == p.host && q.port == p.port)
            throw config_error(fmt::format("--listen {}: peer {} of {} has that address", listen, q.id, where));
    cluster.join = join;
    cluster.peers.push_back(p);
    return p.id;
}

}  // namespace dhtkit
