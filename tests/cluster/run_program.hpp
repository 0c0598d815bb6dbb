#pragma once
// Runs a program to its end for a test, with a given stdin, and keeps what it printed.

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "local_cluster.hpp"

namespace test {

struct program_result {
    int status = -1;  // the exit status; -1 when it did not exit normally
    std::string out, err;
};

inline std::string slurp(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

// Runs argv[0] (looked up in PATH when it has no '/') with `input` on its stdin; its output files
// go in `dir`. Bounded: the programs the tests run end within seconds, but sanitizer builds on
// 2 busy cores are slow; 180 s is a hang.
inline program_result run_program(const std::filesystem::path& dir, std::vector<std::string> argv_s,
                                   const std::string& input = {}) {
    static int runs = 0;
    const auto base = dir / fmt::format("run-{}", ++runs);
    std::ofstream(base.string() + ".in", std::ios::binary) << input;
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = ::fork();
    if (pid == 0) {
        auto redirect = [](const std::string& path, int flags, int to) {
            int fd = ::open(path.c_str(), flags, 0600);
            if (fd < 0 || ::dup2(fd, to) < 0) ::_exit(127);
            ::close(fd);
        };
        redirect(base.string() + ".in", O_RDONLY, 0);
        redirect(base.string() + ".out", O_WRONLY | O_CREAT | O_TRUNC, 1);
        redirect(base.string() + ".err", O_WRONLY | O_CREAT | O_TRUNC, 2);
        ::execvp(argv[0], argv.data());
        ::_exit(127);
    }
    REQUIRE(pid > 0);
    int status = 0;
    REQUIRE(eventually([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, std::chrono::seconds(180)));
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(base.string() + ".out"), slurp(base.string() + ".err")};
}

}  // namespace test
