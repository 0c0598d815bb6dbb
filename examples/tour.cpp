// dhtkit-tour: a short, runnable walk through the components the peer is composed of, until the
// peer itself exists. Reads a cluster file, places keys on its peers, fills the shared table from
// a thread pool, and serves it over loopback through the epoll reactor.
//
//   dhtkit-tour [CLUSTER.toml]   (default: the examples/cluster.toml beside the sources)

#include <dhtkit/app/config.hpp>
#include <dhtkit/dhtkit.hpp>

#include <fmt/core.h>

#include <future>
#include <map>
#include <thread>
#include <vector>

#ifndef DHTKIT_EXAMPLES_DIR
#define DHTKIT_EXAMPLES_DIR "examples"
#endif

using namespace dhtkit;
using namespace std::chrono_literals;

int main(int argc, char** argv) try {
    const std::string file = argc > 1 ? argv[1] : DHTKIT_EXAMPLES_DIR "/cluster.toml";
    auto cluster = load_config(file);
    fmt::print("config   {}: {} peers, pool of {} threads, {} backups per key\n", file,
               cluster.peers.size(), cluster.pool_threads, cluster.backups);

    // Placement: the cluster map gives each of Redis Cluster's 16384 slots its holders; a key's
    // slot is CRC16 of the key (or of its {hash tag}), the same on every host.
    auto map = initial_cluster_map(cluster);
    std::map<node_id, int> homes;
    for (int i = 0; i < 3000; ++i) homes[map.holders_of_key(fmt::format("key-{}", i)).front()]++;
    for (auto [id, n] : homes) fmt::print("place    peer {} is home to {} of 3000 keys\n", id, n);
    fmt::print("place    '{{user1}}.a' and '{{user1}}.b' share slot {}\n", key_slot("{user1}.a"));

    // The resource manager, filled concurrently by the pool.
    locked_table<std::string, std::string> table;
    thread_pool pool(cluster.pool_threads);
    std::vector<std::future<void>> done;
    for (std::size_t t = 0; t < pool.size(); ++t)
        done.push_back(pool.submit([&table, t] {
            for (int i = 0; i < 25000; ++i) table.put(fmt::format("t{}-key{}", t, i), fmt::format("value {}", i));
        }));
    for (auto& f : done) f.get();
    fmt::print("table    {} workers put {} keys; t0-key42 -> '{}'\n", pool.size(), table.size(),
               table.try_get("t0-key42").value_or("?"));

    // The reactor serves the table: each line "KEY\n" is answered with "VALUE\n".
    auto listener = net::tcp_listener::bind(net::endpoint::parse("127.0.0.1:0"));
    net::epoll_reactor reactor;
    std::map<int, net::tcp_stream> connections;
    reactor.add(listener.fd(), net::interest::read, net::trigger::level, [&](net::readiness) {
        while (auto s = listener.try_accept()) {
            int fd = s->fd();
            auto& conn = connections.emplace(fd, std::move(*s)).first->second;
            reactor.add(fd, net::interest::read, net::trigger::level, [&, fd](net::readiness) {
                char buf[256];
                auto got = conn.receive_some(std::as_writable_bytes(std::span(buf)));
                if (!got.ok() || got.bytes == 0) {
                    reactor.remove(fd);
                    connections.erase(fd);
                    return;
                }
                std::string key(buf, got.bytes);
                if (!key.empty() && key.back() == '\n') key.pop_back();
                auto reply = table.try_get(key).value_or("(none)") + "\n";
                (void)conn.send_all(std::as_bytes(std::span(reply)), 1s);
            });
        }
    });
    std::thread loop([&] { reactor.run(); });

    auto client = net::tcp_stream::connect(listener.local(), 1s);
    for (std::string key : {"t1-key7", "t3-key24999", "missing"}) {
        std::string line = key + "\n";
        (void)client.send_all(std::as_bytes(std::span(line)), 1s);
        std::string reply;
        char c;
        while (client.receive_all({reinterpret_cast<std::byte*>(&c), 1}, 1s).ok() && c != '\n') reply += c;
        fmt::print("serve    asked {} for '{}' -> '{}'\n", listener.local().to_string(), key, reply);
    }
    client.close();
    reactor.post([&] { reactor.remove(listener.fd()); });
    reactor.stop();
    loop.join();
    fmt::print("done     every thread joined, every descriptor closed\n");
    return 0;
} catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 2;
}
