// obtain_bench: the rate of `obtain` (fetch, stream, hash, write, verify, rename) against a
// baseline in the same run: a plain sendfile -> recv -> write copy of the same file over loopback,
// with no hashing. Both read the source from the page cache and write into the same folder.
//
//   obtain_bench [--size-mib N] [--rounds R] [--dir DIR]   (defaults: 1024 MiB, 5 rounds, /tmp)

#include <dhtkit/app/config.hpp>
#include <dhtkit/peer/peer.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <thread>
#include <vector>

using namespace dhtkit;
using clock_type = std::chrono::steady_clock;

namespace {

double seconds_since(clock_type::time_point t) {
    return std::chrono::duration<double>(clock_type::now() - t).count();
}

// The baseline: one connection, the kernel's sendfile on one side, recv + write on the other.
double plain_copy(const std::filesystem::path& source, const std::filesystem::path& dest, std::uint64_t size) {
    auto listener = net::tcp_listener::bind(net::endpoint::parse("127.0.0.1:0"));
    std::thread server([&] {
        auto s = listener.accept(std::chrono::seconds(10));
        net::unique_fd file(::open(source.c_str(), O_RDONLY | O_CLOEXEC));
        (void)s->send_file(file.get(), 0, size, std::chrono::seconds(60));
    });
    auto start = clock_type::now();
    auto client = net::tcp_stream::connect(listener.local(), std::chrono::seconds(2));
    net::unique_fd out(::open(dest.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    std::vector<char> block(1 << 20);
    std::uint64_t got = 0;
    while (got < size) {
        auto r = client.receive_some(std::as_writable_bytes(std::span(block)));
        if (!r) break;
        if (r.bytes == 0) {
            (void)client.wait_readable(std::chrono::seconds(10));
            continue;
        }
        if (::write(out.get(), block.data(), r.bytes) != static_cast<ssize_t>(r.bytes)) break;
        got += r.bytes;
    }
    out.reset();
    double t = seconds_since(start);
    server.join();
    return got == size ? static_cast<double>(size) / t : 0;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) try {
    std::uint64_t size_mib = 1024;
    int rounds = 5;
    std::filesystem::path base = "/tmp";
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string_view flag = argv[i];
        if (flag == "--size-mib") size_mib = std::stoull(argv[i + 1]);
        else if (flag == "--rounds") rounds = std::stoi(argv[i + 1]);
        else if (flag == "--dir") base = argv[i + 1];
        else throw std::invalid_argument("unknown flag " + std::string(flag));
    }
    const std::uint64_t size = size_mib << 20;
    auto dir = base / ("dhtkit-obtain-bench-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir / "shared");
    struct cleanup {
        std::filesystem::path d;
        ~cleanup() { std::filesystem::remove_all(d); }
    } remove_dir{dir};
    {
        std::ofstream f(dir / "shared" / "big.bin", std::ios::binary);
        std::vector<char> block(1 << 20);
        std::mt19937_64 rng(1);
        for (auto& c : block) c = static_cast<char>(rng());
        for (std::uint64_t i = 0; i < size_mib; ++i) {
            block[0] = static_cast<char>(i);
            f.write(block.data(), static_cast<std::streamsize>(block.size()));
        }
    }
    auto probe = net::tcp_listener::bind(net::endpoint::parse("127.0.0.1:0"));
    std::uint16_t port = probe.local().port();
    probe = net::tcp_listener{};
    auto cluster = parse_config(fmt::format("[pool]\nthreads = 2\n[[peers]]\nid = 0\nhost = \"127.0.0.1\"\nport = {}\n"
                                            "shared = \"shared\"\ndata = \"data\"\n", port),
                                dir / "cluster.toml");
    peer<> p(cluster, 0);
    p.start();
    client c(cluster);
    for (int i = 0; i < 200 && !c.search("big.bin").first.ok(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));

    std::vector<double> plain, ours;
    for (int r = 0; r < rounds; ++r) {
        plain.push_back(plain_copy(dir / "shared" / "big.bin", dir / "plain.out", size));
        std::filesystem::remove(dir / "plain.out");
        auto start = clock_type::now();
        auto got = c.obtain("big.bin", dir / "obtained.out");
        double t = seconds_since(start);
        if (!got.ok()) throw std::runtime_error(got.error);
        ours.push_back(static_cast<double>(size) / t);
        std::filesystem::remove(dir / "obtained.out");
    }
    std::printf("file %llu MiB, %d rounds, medians\n", static_cast<unsigned long long>(size_mib), rounds);
    std::printf("  plain sendfile->recv->write  %.2f GB/s\n", median(plain) / 1e9);
    std::printf("  dhtkit obtain (verified)     %.2f GB/s   ratio %.2f\n", median(ours) / 1e9, median(ours) / median(plain));
    p.stop();
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
}
