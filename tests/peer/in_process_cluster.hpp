#pragma once
// Peers composed in code and run in the test's own process (tests/peer): the policies and the
// table are the test's choice.

#include <dhtkit/peer/peer.hpp>

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include <fmt/format.h>

namespace dhtkit::test {

using namespace std::chrono_literals;

// N peers of replication policy `Policy`, table `Table` and storage `Storage` in this process, on
// loopback ports the kernel chose, in a scratch folder.
template <class Policy, class Table = locked_table<std::string, std::string>, class Storage = any_storage>
struct in_process_cluster {
    using peer_type = peer<net::epoll_reactor, thread_pool, Table, Policy, Storage>;

    explicit in_process_cluster(int n, dispatch_model model = dispatch_model::loop) {
        static int counter = 0;
        dir = std::filesystem::temp_directory_path() / fmt::format("dhtkit-inproc-{}-{}", ::getpid(), ++counter);
        std::filesystem::remove_all(dir);
        settings.pool_threads = 1;
        settings.dispatch = model;
        std::vector<net::tcp_listener> held;  // every port at once, so no two peers get the same one
        for (int i = 0; i < n; ++i) {
            held.push_back(net::tcp_listener::bind(net::endpoint::parse("127.0.0.1:0")));
            settings.peers.push_back({static_cast<node_id>(100 + i), "127.0.0.1", held.back().local().port(),
                                      dir / fmt::format("p{}/shared", i), dir / fmt::format("p{}/data", i)});
        }
        held.clear();
        for (const auto& p : settings.peers) {
            peers.push_back(std::make_unique<peer_type>(settings, p.id));
            peers.back()->on_log([](const std::string&) {});
        }
        for (auto& p : peers) p->start();
    }
    ~in_process_cluster() {
        peers.clear();
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }
    dhtkit::client client() {
        client_options o;
        o.request_timeout = 2s;
        return dhtkit::client(std::make_shared<cluster_view>(initial_cluster_map(settings, Policy(settings.backups, settings.consistency_rule))), settings.limits, o);
    }

    std::filesystem::path dir;
    cluster_settings settings;
    std::vector<std::unique_ptr<peer_type>> peers;
};

}  // namespace dhtkit::test
