#include <catch2/catch.hpp>

#include <dhtkit/peer/shared_folder.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <future>

using namespace dhtkit;

TEST_CASE("only plain names inside the shared folder can be opened") {
    auto base = std::filesystem::temp_directory_path() / ("dhtkit-shared-" + std::to_string(::getpid()));
    std::filesystem::remove_all(base);
    std::filesystem::create_directories(base / "shared" / "sub");
    { std::ofstream(base / "shared" / "ok.txt") << "content"; }
    { std::ofstream(base / "secret.txt") << "not yours"; }
    std::filesystem::create_symlink(base / "secret.txt", base / "shared" / "link.txt");

    shared_folder folder(base / "shared");
    shared_folder::refusal why{};
    auto ok = folder.open("ok.txt", &why);
    REQUIRE(ok);
    CHECK(ok->size == 7);
    CHECK(ok->checksum == folder.open("ok.txt")->checksum);  // the cached value agrees

    for (std::string bad : std::vector<std::string>{"../secret.txt", "sub/x", "..", ".", "", "a\\b"}) {
        CHECK_FALSE(folder.open(bad, &why));
        CHECK(why == shared_folder::refusal::bad_name);
    }
    CHECK_FALSE(folder.open(std::string(300, 'a'), &why));  // said as what it is, not as a bad character
    CHECK(why == shared_folder::refusal::too_long);
    CHECK(shared_folder::describe(why).find("255") != std::string_view::npos);
    CHECK_FALSE(folder.open("link.txt", &why));
    CHECK(why == shared_folder::refusal::outside);
    CHECK_FALSE(folder.open("sub", &why));
    CHECK(why == shared_folder::refusal::unreadable);
    CHECK_FALSE(folder.open("absent", &why));
    CHECK(why == shared_folder::refusal::missing);

    auto names = folder.list();
    CHECK(std::find(names.begin(), names.end(), "ok.txt") != names.end());
    std::filesystem::remove_all(base);
}

TEST_CASE("a changed file gets a new checksum") {
    auto base = std::filesystem::temp_directory_path() / ("dhtkit-shared2-" + std::to_string(::getpid()));
    std::filesystem::remove_all(base);
    shared_folder folder(base);
    { std::ofstream(base / "f") << "one"; }
    auto first = folder.open("f")->checksum;
    { std::ofstream(base / "f") << "two, longer"; }
    CHECK(folder.open("f")->checksum != first);
    std::filesystem::remove_all(base);
}

TEST_CASE("a FIFO, a device or a folder in the shared folder is refused at once, never waited on") {
    auto base = std::filesystem::temp_directory_path() / ("dhtkit-fifo-" + std::to_string(::getpid()));
    std::filesystem::remove_all(base);
    std::filesystem::create_directories(base);
    REQUIRE(::mkfifo((base / "pipe").c_str(), 0600) == 0);
    shared_folder folder(base);
    auto opening = std::async(std::launch::async, [&] {
        shared_folder::refusal why{};
        const bool opened = folder.open("pipe", &why).has_value();
        return std::pair(opened, why);
    });
    if (opening.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
        // Blocked waiting for a writer: be one, so that the test ends, and fail.
        const int w = ::open((base / "pipe").c_str(), O_RDWR);
        opening.wait();
        ::close(w);
        FAIL("opening a FIFO in the shared folder waited for a writer");
    }
    const auto [opened, why] = opening.get();
    CHECK_FALSE(opened);
    CHECK(why == shared_folder::refusal::unreadable);
    CHECK(shared_folder::describe(why) == "not a readable regular file");
    std::filesystem::remove_all(base);
}
