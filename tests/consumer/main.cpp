// Uses the installed headers the way a user's project would, linking only dhtkit::dhtkit (no
// config file, no toml++): a table and a pool, then a peer composed, started and queried in code.
#include <dhtkit/dhtkit.hpp>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

int main() {
    dhtkit::locked_table<std::string, std::string> table;
    table.put("key", "value");
    dhtkit::thread_pool pool(2);
    auto found = pool.submit([&] { return table.try_get("key"); }).get();
    if (!found || *found != "value") return 1;

    // One peer on a loopback port the kernel picks; settings are plain data.
    auto dir = std::filesystem::temp_directory_path() / ("dhtkit-consumer-" + std::to_string(::getpid()));
    dhtkit::cluster_settings cluster;
    cluster.pool_threads = 1;
    std::uint16_t port = 0;
    {
        auto probe = dhtkit::net::tcp_listener::bind(dhtkit::net::endpoint::parse("127.0.0.1:0"));
        port = probe.local().port();
    }
    cluster.peers.push_back({7, "127.0.0.1", port, dir / "shared", dir / "data"});
    int status = 0;
    {
        dhtkit::peer<> node(cluster, 7);
        node.on_log([](const std::string&) {});
        node.start();
        dhtkit::client client(cluster);
        auto put = client.put("{consumer}.greeting", "hello");
        auto got = client.get("{consumer}.greeting");
        std::printf("consumer: table %s -> %s; peer 7 on port %u: put %s, get '%s', slot %u\n", "key", found->c_str(),
                    static_cast<unsigned>(port), put.ok() ? "ok" : put.error.c_str(), got.value.c_str(),
                    static_cast<unsigned>(dhtkit::key_slot("{consumer}.greeting")));
        if (!put.ok() || got.value != "hello") status = 2;
    }
    std::filesystem::remove_all(dir);
    return status;
}
