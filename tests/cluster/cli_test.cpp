// dhtkit-cli as a user meets it, on real processes: one argument is one word, lines are split as a
// shell splits them, flags are checked, `stats` asks every peer; at a terminal (a pseudo-terminal
// the test drives) the prompt has history, and Ctrl-C cancels a stuck command and returns to it.

#include <catch2/catch.hpp>

#include "local_cluster.hpp"
#include "run_program.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <sys/wait.h>

#include <fstream>
#include <iterator>
#include <sstream>

using namespace std::chrono_literals;

namespace {

using test::program_result;

// Runs dhtkit-cli --config (the cluster's file) ARGS..., with `input` on its stdin.
program_result run_cli(const test::local_cluster& cluster, const std::vector<std::string>& args, const std::string& input = {}) {
    std::vector<std::string> argv = {DHTKIT_CLI_BINARY, "--config", cluster.config_file().string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return test::run_program(cluster.dir(), std::move(argv), input);
}

// dhtkit-cli at a terminal: a pseudo-terminal whose other side the test types into and reads.
class terminal_session {
public:
    // Runs `program` --config (the cluster's file) ARGS... with HOME at `home`.
    terminal_session(const test::local_cluster& cluster, const std::filesystem::path& home,
                     std::string program = DHTKIT_CLI_BINARY, std::vector<std::string> args = {}) {
        std::vector<std::string> argv_s = {std::move(program), "--config", cluster.config_file().string()};
        argv_s.insert(argv_s.end(), args.begin(), args.end());
        std::vector<char*> argv;
        for (auto& a : argv_s) argv.push_back(a.data());
        argv.push_back(nullptr);
        std::string home_env = "HOME=" + home.string();
        pid_ = ::forkpty(&master_, nullptr, nullptr, nullptr);
        REQUIRE(pid_ >= 0);
        if (pid_ == 0) {
            ::putenv(home_env.data());
            ::putenv(const_cast<char*>("TERM=dumb"));
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
    }
    terminal_session(const terminal_session&) = delete;
    terminal_session& operator=(const terminal_session&) = delete;
    ~terminal_session() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
        ::close(master_);
    }

    void type(std::string_view keys) { REQUIRE(::write(master_, keys.data(), keys.size()) == static_cast<ssize_t>(keys.size())); }

    // Reads the screen until `text` appears after what was already waited for; false after 10 s.
    bool wait_for(std::string_view text) {
        const auto until = std::chrono::steady_clock::now() + 10s;
        for (;;) {
            if (auto at = screen_.find(text, seen_); at != std::string::npos) {
                seen_ = at + text.size();
                return true;
            }
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
            pollfd p{master_, POLLIN, 0};
            if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
            char buf[4096];
            ssize_t n = ::read(master_, buf, sizeof buf);
            if (n <= 0) return false;
            screen_.append(buf, static_cast<std::size_t>(n));
        }
    }
    [[nodiscard]] const std::string& screen() const noexcept { return screen_; }

    // Ends the session with `quit` and returns the exit status.
    int quit() {
        type("quit\r");
        int status = 0;
        REQUIRE(test::eventually([&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; }, 30s));
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }

private:
    int master_ = -1;
    pid_t pid_ = -1;
    std::string screen_;
    std::size_t seen_ = 0;
};

}  // namespace

TEST_CASE("dhtkit-cli takes one argument as one word, and a line as a shell splits it") {
    test::local_cluster cluster;
    cluster.start_all();
    auto c = cluster.client();

    auto put = run_cli(cluster, {"put", "my key", "  my value, with spaces"});
    INFO(put.err);
    REQUIRE(put.status == 0);
    CHECK(c.get("my key").value == "  my value, with spaces");
    CHECK(c.get("my").code == dhtkit::protocol::status::not_found);
    auto get = run_cli(cluster, {"get", "my key"});
    CHECK(get.out == "  my value, with spaces\n");

    // Words that look like flags after the command are the command's.
    CHECK(run_cli(cluster, {"put", "dash", "--not-a-flag"}).status == 0);
    CHECK(c.get("dash").value == "--not-a-flag");

    // A line from stdin: quotes and escapes as in a shell.
    auto lines = run_cli(cluster, {}, "put \"quoted key\" 'single \"inner\" quotes'\nput plain a\\ b\nget 'quoted key'\nput one two three\nget \"unterminated\n");
    CHECK(lines.out == "ok\nok\nsingle \"inner\" quotes\n");
    CHECK(c.get("plain").value == "a b");
    CHECK_THAT(lines.err, Catch::Contains("usage: put KEY VALUE") && Catch::Contains("unterminated \" quote"));
    CHECK(lines.status == 2);
}

TEST_CASE("dhtkit-cli checks its flags and its command's words") {
    test::local_cluster cluster;
    cluster.start_all();
    auto fraction = run_cli(cluster, {"--peer", "1.7", "ping"});
    CHECK(fraction.status == 2);
    CHECK_THAT(fraction.err, Catch::Contains("--peer"));
    // A negative id is refused as written, not wrapped round to 18446744073709551615.
    auto negative = run_cli(cluster, {"--peer", "-1", "ping"});
    CHECK(negative.status == 2);
    CHECK_THAT(negative.err, Catch::Contains("--peer") && Catch::Contains("not '-1'") &&
                                 !Catch::Contains("18446744073709551615"));
    auto unknown = run_cli(cluster, {"--bogus", "ping"});
    CHECK(unknown.status == 2);
    CHECK_THAT(unknown.err, Catch::Contains("--bogus"));
    auto help = run_cli(cluster, {"--help"});
    CHECK(help.status == 0);
    CHECK_THAT(help.out, Catch::Contains("--peer") && Catch::Contains("put KEY VALUE"));
    auto no_peer = run_cli(cluster, {"--peer", "9", "ping"});
    CHECK(no_peer.status == 2);
    CHECK_THAT(no_peer.err, Catch::Contains("no peer with id 9"));
}

TEST_CASE("stats without an id shows every peer, with --peer, that peer") {
    test::local_cluster cluster;
    cluster.start_all();
    auto all = run_cli(cluster, {}, "stats\n");
    REQUIRE(all.status == 0);
    for (int i = 0; i < 3; ++i) CHECK_THAT(all.out, Catch::Contains(fmt::format("peer {}:\n", i)));
    auto one = run_cli(cluster, {"--peer", "1", "stats"});
    REQUIRE(one.status == 0);
    CHECK_THAT(one.out, Catch::Contains("peer 1:\n"));
    CHECK_THAT(one.out, !Catch::Contains("peer 0:\n"));
}

TEST_CASE("downloads keep the source's permission bits, a destination in a missing folder says so") {
    test::local_cluster cluster({.backups = 0});
    const auto source = cluster.shared(1) / "script.sh";
    std::ofstream(source) << "#!/bin/sh\necho hello\n";
    std::filesystem::permissions(source, std::filesystem::perms::owner_all | std::filesystem::perms::group_read |
                                             std::filesystem::perms::group_exec | std::filesystem::perms::others_read);
    cluster.start_all();
    auto c = cluster.client();
    REQUIRE(test::eventually([&] { return c.search("script.sh").first.ok(); }));
    const auto dest = cluster.dir() / "script.copy";
    auto got = run_cli(cluster, {"obtain", "script.sh", dest.string()});
    INFO(got.err);
    REQUIRE(got.status == 0);
    CHECK(std::filesystem::status(dest).permissions() == std::filesystem::status(source).permissions());

    auto missing = run_cli(cluster, {"obtain", "script.sh", (cluster.dir() / "no-such-folder" / "x").string()});
    CHECK(missing.status == 2);
    CHECK_THAT(missing.err, Catch::Contains("no such folder") && !Catch::Contains("peer 1"));

    auto long_name = run_cli(cluster, {"--peer", "1", "register", std::string(300, 'n')});
    CHECK(long_name.status == 2);
    CHECK_THAT(long_name.err, Catch::Contains("at most 255 bytes"));
}

TEST_CASE("at a terminal: history, and Ctrl-C cancels a stuck command and returns to the prompt") {
    test::local_cluster cluster({.backups = 0});
    auto c = cluster.client();
    // A file held by peer 2 whose name's home is another peer: with peer 2 paused, search answers
    // and the download waits.
    std::string name;
    for (int i = 0; name.empty() || c.home_of(name) == 2; ++i) name = fmt::format("slow{}.txt", i);
    std::ofstream(cluster.shared(2) / name) << "the holder will be paused";
    cluster.start_all();
    REQUIRE(test::eventually([&] { return c.search(name).first.ok(); }));
    const auto home = cluster.dir() / "home";
    std::filesystem::create_directories(home);

    {
        terminal_session t(cluster, home);
        REQUIRE(t.wait_for("dhtkit> "));
        t.type("put 'typed key' 'typed value'\r");
        REQUIRE(t.wait_for("ok"));
        REQUIRE(t.wait_for("dhtkit> "));
        t.type("\x1b[A\r");  // the line before, again, from the history
        REQUIRE(t.wait_for("ok"));
        REQUIRE(t.wait_for("dhtkit> "));
        CHECK(c.get("typed key").value == "typed value");

        // Ctrl-C at the prompt drops what was typed.
        t.type("get never-sent");
        REQUIRE(t.wait_for("never-sent"));  // echoed: the editor has the line before Ctrl-C comes
        t.type("\x03");
        REQUIRE(t.wait_for("dhtkit> "));

        // The file's only holder is paused: obtain waits on it. Ctrl-C gives the prompt back.
        cluster.kill(2, SIGSTOP);
        REQUIRE(cluster.wait_stopped(2));
        const auto dest = cluster.dir() / "slow.copy";
        t.type(fmt::format("obtain {} {}\r", name, dest.string()));
        REQUIRE(t.wait_for(dest.string()));
        REQUIRE(t.wait_for("\n"));  // the editor took the line: the command runs
        t.type("\x03");
        INFO(t.screen());
        REQUIRE(t.wait_for("cancelled"));
        REQUIRE(t.wait_for("dhtkit> "));
        t.type("where anything\r");
        REQUIRE(t.wait_for("slot "));
        cluster.kill(2, SIGCONT);
        // The cancelled download leaves nothing behind, even once the holder answers.
        CHECK(t.quit() == 0);
        CHECK_FALSE(std::filesystem::exists(dest));
    }
    // Kept for the next session (libedit writes a space as \040).
    const auto history = test::slurp(home / ".dhtkit_history");
    CHECK_THAT(history, Catch::Contains("typed") && Catch::Contains("where"));
}

TEST_CASE("the peer's own prompt: Ctrl-C cancels a stuck command and the peer keeps serving") {
    test::local_cluster cluster({.backups = 0});
    auto c = cluster.client();
    std::string name;
    for (int i = 0; name.empty() || c.home_of(name) == 2; ++i) name = fmt::format("stuck{}.txt", i);
    std::ofstream(cluster.shared(2) / name) << "the holder will be paused";
    cluster.start(1);
    cluster.start(2);
    const auto home = cluster.dir() / "home";
    std::filesystem::create_directories(home);
    // Peer 0 in the foreground of a terminal, with its supervisor (both in the terminal's group).
    terminal_session t(cluster, home, DHTKIT_PEER_BINARY, {"--id", "0"});
    REQUIRE(t.wait_for("dhtkit[0]> "));
    REQUIRE(test::eventually([&] { return c.search(name).first.ok(); }));

    cluster.kill(2, SIGSTOP);
    REQUIRE(cluster.wait_stopped(2));
    t.type(fmt::format("obtain {} {}\r", name, (cluster.dir() / "stuck.copy").string()));
    REQUIRE(t.wait_for("stuck.copy"));
    REQUIRE(t.wait_for("\n"));
    t.type("\x03");
    INFO(t.screen());
    REQUIRE(t.wait_for("cancelled"));
    REQUIRE(t.wait_for("dhtkit[0]> "));
    cluster.kill(2, SIGCONT);
    // The peer was not stopped by it: it serves, from the prompt and to others.
    t.type("where somewhere\r");
    REQUIRE(t.wait_for("slot "));
    CHECK(c.call(0, dhtkit::protocol::opcode::ping, {}).ok());
    CHECK(t.quit() == 0);
}

TEST_CASE("obtain checks DEST before the first byte: a name that is no file, a read-only file without --force") {
    test::local_cluster cluster({.backups = 0});
    { std::ofstream(cluster.shared(1) / "doc.txt") << "the shared text"; }
    cluster.start_all();
    auto c = cluster.client();
    REQUIRE(test::eventually([&] { return c.search("doc.txt").first.ok(); }));
    auto read_all = [](const std::filesystem::path& p) {
        std::ifstream in(p);
        return std::string(std::istreambuf_iterator<char>(in), {});
    };

    auto nameless = run_cli(cluster, {"obtain", "doc.txt", ""});
    CHECK(nameless.status != 0);
    CHECK_THAT(nameless.err, Catch::Contains("names no file"));

    const auto dest = cluster.dir() / "copy.txt";
    { std::ofstream(dest) << "mine"; }
    std::filesystem::permissions(dest, std::filesystem::perms::owner_read);
    auto kept = run_cli(cluster, {"obtain", "doc.txt", dest.string()});
    CHECK(kept.status != 0);
    CHECK_THAT(kept.err, Catch::Contains("read-only") && Catch::Contains("--force"));
    CHECK(read_all(dest) == "mine");

    auto forced = run_cli(cluster, {"obtain", "doc.txt", dest.string(), "--force"});
    CHECK(forced.status == 0);
    CHECK(read_all(dest) == "the shared text");
}
