// dhtkit-bench: a load generator for a running cluster. Each connection keeps --pipeline
// requests in flight against one peer, with keys whose home is that peer; replies are matched by
// request id (or, with --resp, by their order) and timed. Prints ops/s and latency percentiles, or
// JSON with --json. With --resp the same load goes to the peers' RESP ports as GET and SET
// commands: one load generator for both fronts, so their server costs compare.

#include <dhtkit/app/config.hpp>
#include <dhtkit/peer/client.hpp>
#include <dhtkit/net/socket.hpp>
#include <dhtkit/protocol/codec.hpp>

#include <sys/epoll.h>

#include <algorithm>
#include <charconv>
#include <atomic>
#include <chrono>
#include <deque>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <random>
#include <thread>
#include <vector>

#include "flags.hpp"

using namespace dhtkit;
using clock_type = std::chrono::steady_clock;

namespace {

constexpr const char* about =
    "dhtkit-bench: loads a running cluster. C connections spread over the peers (or all to peer N),\n"
    "each with D requests in flight, for S seconds, after putting K keys of B-byte values.\n"
    "Reports ops/s and p50/p99/p99.9 latency.";

struct options {
    std::vector<std::size_t> targets;  // peer indexes
    std::size_t connections = 50, pipeline = 1, keys = 100000, value_size = 100, threads = 1;
    unsigned read_percent = 90;
    double seconds = 5;
    bool json = false;
    bool resp = false;  // GET and SET on the peers' resp_port instead of our frames
};

// The length of the first whole RESP reply in `in` (a simple string, error, integer or bulk, as
// GET and SET answer), 0 when it is not whole yet; `failed` when it is an error.
std::size_t resp_reply_length(std::string_view in, bool& failed) {
    const auto eol = in.find("\r\n");
    if (eol == std::string_view::npos) return 0;
    failed = in[0] == '-';
    if (in[0] != '$') return eol + 2;
    long long n = 0;
    const auto [end, ec] = std::from_chars(in.data() + 1, in.data() + eol, n);
    if (ec != std::errc() || end != in.data() + eol) throw std::runtime_error("a RESP reply this bench cannot read");
    if (n < 0) return eol + 2;  // null bulk
    const auto whole = eol + 2 + static_cast<std::size_t>(n) + 2;
    return in.size() >= whole ? whole : 0;
}

void append_resp_command(std::string& out, std::initializer_list<std::string_view> args) {
    fmt::format_to(std::back_inserter(out), "*{}\r\n", args.size());
    for (auto a : args) fmt::format_to(std::back_inserter(out), "${}\r\n{}\r\n", a.size(), a);
}

struct connection {
    net::tcp_stream stream;
    protocol::frame_reader reader{{1024, 1 << 24}};
    std::size_t peer = 0;
    std::deque<std::pair<std::uint64_t, clock_type::time_point>> in_flight;
    std::string out;
    std::string resp_in;  // with --resp: replies received and not yet taken
};

struct worker_result {
    std::vector<std::uint32_t> latency_ns;
    std::uint64_t errors = 0;
};

class load {
public:
    load(const cluster_settings& c, const options& o) : cluster_(c), opt_(o), value_(o.value_size, 'v') {
        // Each connection asks only the home of its keys, as a slot-aware client would.
        const auto map = initial_cluster_map(c);
        keys_by_peer_.resize(c.peers.size());
        for (std::size_t i = 0; i < o.keys; ++i) {
            auto key = fmt::format("key{:013}", i);
            auto home = map.holders_of_key(key).front();
            for (std::size_t p = 0; p < c.peers.size(); ++p)
                if (c.peers[p].id == home) keys_by_peer_[p].push_back(std::move(key));
        }
    }

    void preload() {
        for (std::size_t p : opt_.targets) {
            auto s = connect(p);
            std::string batch;
            protocol::frame_reader reader({1024, 1 << 20});
            std::size_t sent = 0;
            std::size_t got = 0;
            protocol::frame_view f;
            for (const auto& k : keys_by_peer_[p]) {
                protocol::append_frame(batch, {protocol::opcode::put, 0, protocol::status::ok, ++sent, 0, 0}, k, value_);
                if (batch.size() > (1 << 20) || &k == &keys_by_peer_[p].back()) {
                    (void)s.send_all(std::as_bytes(std::span(batch)), std::chrono::seconds(30));
                    batch.clear();
                    // Take the replies that are there: a peer stops reading a client that does
                    // not read (its max_output_bytes), and a million puts answer 24 MB.
                    for (;;) {
                        auto in = s.receive_some(reader.prepare(1 << 16));
                        if (!in) throw std::runtime_error("preload: the peer closed the connection");
                        if (in.bytes == 0) break;
                        reader.commit(in.bytes);
                        while (reader.next(f) == protocol::frame_reader::result::frame) ++got;
                    }
                }
            }
            while (got < sent) {
                while (reader.next(f) == protocol::frame_reader::result::frame) ++got;
                if (got == sent) break;
                auto in = s.receive_some(reader.prepare(1 << 16));
                if (!in) throw std::runtime_error("preload: the peer closed the connection");
                if (in.bytes == 0 && !s.wait_readable(std::chrono::seconds(30))) throw std::runtime_error("preload timed out");
                reader.commit(in.bytes);
            }
        }
    }

    std::vector<worker_result> run() {
        std::vector<worker_result> results(opt_.threads);
        std::vector<std::thread> threads;
        const auto end = clock_type::now() + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(opt_.seconds));
        for (std::size_t t = 0; t < opt_.threads; ++t) {
            std::size_t mine = opt_.connections / opt_.threads + (t < opt_.connections % opt_.threads ? 1 : 0);
            threads.emplace_back([this, t, mine, end, &results] { drive(t, mine, end, results[t]); });
        }
        for (auto& th : threads) th.join();
        return results;
    }

private:
    net::tcp_stream connect(std::size_t peer, bool resp = false) {
        const auto& p = cluster_.peers[peer];
        if (resp && !p.resp_port) throw std::runtime_error(fmt::format("peer {} has no resp_port", p.id));
        return net::tcp_stream::connect(net::endpoint::resolve(p.host, resp ? p.resp_port : p.port), std::chrono::seconds(2));
    }

    void drive(std::size_t t, std::size_t count, clock_type::time_point end, worker_result& result) {
        std::vector<std::unique_ptr<connection>> conns;
        net::unique_fd ep(::epoll_create1(EPOLL_CLOEXEC));
        std::mt19937_64 rng(t * 7919 + 1);
        std::uint64_t next_id = 0;
        for (std::size_t i = 0; i < count; ++i) {
            auto c = std::make_unique<connection>();
            c->peer = opt_.targets[(t + i * opt_.threads) % opt_.targets.size()];
            c->stream = connect(c->peer, opt_.resp);
            c->stream.set_nonblocking(true);
            epoll_event ev{};
            ev.events = EPOLLIN;
            ev.data.ptr = c.get();
            ::epoll_ctl(ep.get(), EPOLL_CTL_ADD, c->stream.fd(), &ev);
            conns.push_back(std::move(c));
        }
        auto issue = [&](connection& c) {
            const auto& keys = keys_by_peer_[c.peer];
            const auto& key = keys[rng() % keys.size()];
            bool read = rng() % 100 < opt_.read_percent;
            ++next_id;
            if (!opt_.resp)
                protocol::append_frame(c.out, {read ? protocol::opcode::get : protocol::opcode::put, 0, protocol::status::ok, next_id, 0, 0},
                                       key, read ? std::string_view{} : std::string_view(value_));
            else if (read)
                append_resp_command(c.out, {"GET", key});
            else
                append_resp_command(c.out, {"SET", key, value_});
            c.in_flight.emplace_back(next_id, clock_type::now());
        };
        auto flush = [&](connection& c) {
            if (!c.out.empty() && !c.stream.send_all(std::as_bytes(std::span(c.out)), std::chrono::seconds(5))) ++result.errors;
            c.out.clear();
        };
        for (auto& c : conns) {
            for (std::size_t d = 0; d < opt_.pipeline; ++d) issue(*c);
            flush(*c);
        }
        result.latency_ns.reserve(1 << 20);
        std::array<epoll_event, 256> ready;
        bool draining = false;
        std::size_t outstanding = conns.size() * opt_.pipeline;
        while (outstanding > 0) {
            if (!draining && clock_type::now() >= end) draining = true;
            int n = ::epoll_wait(ep.get(), ready.data(), static_cast<int>(ready.size()), 1000);
            if (n == 0 && draining) break;
            for (int i = 0; i < n; ++i) {
                auto& c = *static_cast<connection*>(ready[static_cast<std::size_t>(i)].data.ptr);
                const auto held = c.resp_in.size();
                if (opt_.resp) c.resp_in.resize(held + (1 << 16));
                auto in = opt_.resp ? c.stream.receive_some(std::as_writable_bytes(std::span(c.resp_in)).subspan(held))
                                    : c.stream.receive_some(c.reader.prepare(1 << 16));
                if (!in) {
                    c.resp_in.resize(held);
                    ++result.errors;
                    ::epoll_ctl(ep.get(), EPOLL_CTL_DEL, c.stream.fd(), nullptr);
                    outstanding -= c.in_flight.size();
                    c.in_flight.clear();
                    continue;
                }
                if (opt_.resp) c.resp_in.resize(held + in.bytes);
                else c.reader.commit(in.bytes);
                protocol::frame_view f;
                const auto now = clock_type::now();
                // One reply: true for the next in flight, with `failed` when it is an error.
                auto next_reply = [&](bool& failed) {
                    if (opt_.resp) {
                        const auto n = resp_reply_length(c.resp_in, failed);
                        if (n == 0) return false;
                        c.resp_in.erase(0, n);
                        return true;
                    }
                    while (c.reader.next(f) == protocol::frame_reader::result::frame) {
                        if (c.in_flight.empty() || c.in_flight.front().first != f.h.request_id) {
                            ++result.errors;
                            continue;
                        }
                        failed = f.h.code != protocol::status::ok;
                        return true;
                    }
                    return false;
                };
                bool failed = false;
                while (next_reply(failed)) {
                    if (c.in_flight.empty()) {
                        ++result.errors;
                        continue;
                    }
                    if (failed) ++result.errors;
                    if (!draining)
                        result.latency_ns.push_back(static_cast<std::uint32_t>(
                            std::min<std::int64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(now - c.in_flight.front().second).count(), UINT32_MAX)));
                    c.in_flight.pop_front();
                    if (draining) --outstanding;
                    else issue(c);
                }
                flush(c);
            }
        }
    }

    const cluster_settings& cluster_;
    options opt_;
    std::string value_;
    std::vector<std::vector<std::string>> keys_by_peer_;
};

double percentile(const std::vector<std::uint32_t>& sorted, double p) {
    if (sorted.empty()) return 0;
    auto i = static_cast<std::size_t>(p / 100.0 * static_cast<double>(sorted.size() - 1));
    return sorted[i] / 1000.0;
}

}  // namespace

int main(int argc, char** argv) try {
    CLI::App app(about, "dhtkit-bench");
    std::string config;
    std::optional<std::uint64_t> peer;
    options o;
    std::string mix = "read90";
    app.add_option("--config", config, "the cluster's TOML file")->required();
    app.add_option("--peer", peer, "load only peer N")->check(examples::peer_id);
    app.add_option("--connections", o.connections, "connections in all")->check(CLI::PositiveNumber)->capture_default_str();
    app.add_option("--pipeline", o.pipeline, "requests in flight per connection")->check(CLI::PositiveNumber)->capture_default_str();
    app.add_option("--mix", mix, "the operations")->check(CLI::IsMember({"read90", "read50", "read100", "write100"}))
        ->capture_default_str();
    app.add_option("--seconds", o.seconds, "how long to measure")->check(CLI::PositiveNumber)->capture_default_str();
    app.add_option("--value-size", o.value_size, "bytes per value")->capture_default_str();
    app.add_option("--keys", o.keys, "keys put first, then read and written")->check(CLI::PositiveNumber)->capture_default_str();
    app.add_option("--threads", o.threads, "load threads")->check(CLI::PositiveNumber)->capture_default_str();
    app.add_flag("--json", o.json, "one line of JSON instead of text");
    app.add_flag("--resp", o.resp, "GET and SET on the peers' resp_port instead of our frames (the keys are put first with our frames)");
    if (auto status = examples::parse_flags(app, argc, argv)) return *status;
    o.read_percent = mix == "read90" ? 90 : mix == "read50" ? 50 : mix == "read100" ? 100 : 0;
    o.threads = std::min(o.threads, std::max<std::size_t>(1, o.connections));

    auto cluster = load_config(config);
    for (std::size_t i = 0; i < cluster.peers.size(); ++i)
        if (!peer || cluster.peers[i].id == *peer) o.targets.push_back(i);
    if (o.targets.empty()) (void)cluster.peer(*peer);  // throws: no such peer

    load l(cluster, o);
    l.preload();
    auto results = l.run();
    const double elapsed = o.seconds;  // replies are counted only until the deadline
    std::vector<std::uint32_t> all;
    std::uint64_t errors = 0;
    for (auto& r : results) {
        all.insert(all.end(), r.latency_ns.begin(), r.latency_ns.end());
        errors += r.errors;
    }
    std::sort(all.begin(), all.end());
    double ops = static_cast<double>(all.size()) / elapsed;
    if (o.json) {
        fmt::print("{{\"mix\":\"{}\",\"peers\":{},\"connections\":{},\"pipeline\":{},\"value_size\":{},\"seconds\":{},"
                   "\"ops\":{},\"ops_per_s\":{:.0f},\"p50_us\":{:.1f},\"p99_us\":{:.1f},\"p999_us\":{:.1f},\"errors\":{}}}\n",
                   mix, o.targets.size(), o.connections, o.pipeline, o.value_size, o.seconds, all.size(), ops,
                   percentile(all, 50), percentile(all, 99), percentile(all, 99.9), errors);
    } else {
        fmt::print("{} against {} peer(s), {} connections x {} in flight, {}-byte values, {:.1f} s\n", mix,
                   o.targets.size(), o.connections, o.pipeline, o.value_size, o.seconds);
        fmt::print("  {:.0f} ops/s   p50 {:.1f} us   p99 {:.1f} us   p99.9 {:.1f} us   errors {}\n", ops,
                   percentile(all, 50), percentile(all, 99), percentile(all, 99.9), errors);
    }
    return errors == 0 ? 0 : 1;
} catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
}
