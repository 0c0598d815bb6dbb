// Where a download may go, decided before its first byte: a name, a folder that exists and can
// be written, and a file there replaced only when this user may write it (or is told to).
#include <catch2/catch.hpp>

#include <dhtkit/peer/file_download.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

using namespace dhtkit;

TEST_CASE("a download's destination is checked before the first byte") {
    const auto base = std::filesystem::temp_directory_path() / ("dhtkit-dest-" + std::to_string(::getpid()));
    std::filesystem::remove_all(base);
    std::filesystem::create_directories(base / "folder");
    { std::ofstream(base / "mine.txt") << "old"; }
    { std::ofstream(base / "locked.txt") << "old"; }
    using std::filesystem::perms;
    std::filesystem::permissions(base / "locked.txt", perms::owner_read);

    CHECK_FALSE(destination_refusal(base / "new.txt"));
    CHECK_FALSE(destination_refusal(base / "mine.txt"));  // a file this user may write is replaced
    CHECK_THAT(destination_refusal("").value_or(""), Catch::Contains("names no file"));
    CHECK_THAT(destination_refusal(base.string() + "/").value_or(""), Catch::Contains("names no file"));
    CHECK_THAT(destination_refusal(base / "absent" / "x").value_or(""), Catch::Contains("no such folder"));
    CHECK_THAT(destination_refusal(base / "folder").value_or(""), Catch::Contains("is a folder"));
    // Read-only by its mode, whoever asks (root may write anything, and is asked too).
    CHECK_THAT(destination_refusal(base / "locked.txt").value_or(""),
               Catch::Contains("read-only") && Catch::Contains("--force"));
    CHECK_FALSE(destination_refusal(base / "locked.txt", true));
    std::filesystem::remove_all(base);
}
