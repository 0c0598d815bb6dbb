#include <catch2/catch.hpp>

#include <dhtkit/store/write_ahead_log.hpp>

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace dhtkit;

namespace {

// A folder of the test's own, removed at the end.
struct temp_folder {
    std::filesystem::path path;
    temp_folder() {
        static int n = 0;
        path = std::filesystem::temp_directory_path() / fmt::format("dhtkit-wal-{}-{}", ::getpid(), ++n);
        std::filesystem::remove_all(path);
    }
    ~temp_folder() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
};

// What the log's owner would hold: a table the log replays into and snapshots from. Entries here
// are "value@sequence"; a later sequence wins, as a later version does in a peer's table.
struct owner {
    std::mutex mutex;
    std::map<std::string, std::string> table;

    static std::uint64_t sequence(std::string_view entry) { return std::stoull(std::string(entry.substr(entry.find('@') + 1))); }
    void apply(std::string_view key, std::string_view entry) {
        std::lock_guard lock(mutex);
        auto& slot = table[std::string(key)];
        if (slot.empty() || sequence(slot) < sequence(entry)) slot = entry;
    }
    write_ahead_log::entry_fn applier() {
        return [this](std::string_view k, std::string_view e) { apply(k, e); };
    }
    write_ahead_log::table_source source() {
        return [this](const write_ahead_log::entry_fn& each) {
            std::lock_guard lock(mutex);
            for (const auto& [k, e] : table) each(k, e);
        };
    }
};

log_options with(fsync_rule rule, bool repair = false) {
    log_options o;
    o.sync = rule;
    o.repair = repair;
    return o;
}

// Writes `count` records (keys cycling over `keys`) and waits until each is acknowledged.
void write(write_ahead_log& log, owner& o, std::uint64_t first, std::uint64_t count, std::uint64_t keys) {
    std::atomic<std::uint64_t> acked{0}, failed{0};
    for (std::uint64_t i = first; i < first + count; ++i) {
        auto key = fmt::format("k{}", i % keys);
        auto entry = fmt::format("v{}@{}", i, i);
        o.apply(key, entry);
        log.append(key, entry, [&](bool ok) {
            (ok ? acked : failed).fetch_add(1);
            acked.notify_all();
        });
    }
    for (auto n = acked.load(); n + failed.load() < count; n = acked.load()) acked.wait(n);
    REQUIRE(failed == 0);
}

// A closed log of `count` records in `dir`; `o` holds what they say.
void fill(const std::filesystem::path& dir, owner& o, std::uint64_t count, log_options opt = {}) {
    write_ahead_log log(dir, std::move(opt), o.applier(), o.source());
    write(log, o, 0, count, 100);
}

std::map<std::string, std::string> reopened(const std::filesystem::path& dir, log_options opt = {}) {
    owner fresh;
    write_ahead_log log(dir, opt, fresh.applier(), fresh.source());
    log.stop();
    return fresh.table;
}

}  // namespace

TEST_CASE("what was acknowledged is there after reopening, under every fsync rule") {
    const auto rule = GENERATE(fsync_rule::always, fsync_rule::everysec, fsync_rule::no);
    temp_folder dir;
    owner o;
    {
        write_ahead_log log(dir.path, with(rule), o.applier(), o.source());
        write(log, o, 0, 2000, 300);
    }
    CHECK(reopened(dir.path) == o.table);
}

TEST_CASE("a replay applies batches on several threads and ends with the table the writes made") {
    temp_folder dir;
    owner o;
    fill(dir.path, o, 40000, with(fsync_rule::no));  // many batches, keys overwritten across them
    CHECK(reopened(dir.path) == o.table);
}

TEST_CASE("writers on many threads, while the log compacts: every write acknowledged once, and kept") {
    const auto rule = GENERATE(fsync_rule::always, fsync_rule::everysec, fsync_rule::no);
    temp_folder dir;
    owner o;
    std::uint64_t compactions = 0;
    {
        auto opt = with(rule);
        opt.compact_after_bytes = 16 * 1024;  // a few compactions while the writers run
        write_ahead_log log(dir.path, opt, o.applier(), o.source());
        std::vector<std::thread> writers;
        for (std::uint64_t t = 0; t < 4; ++t)
            writers.emplace_back([&, t] { write(log, o, t * 1000, 500, 1 << 30); });
        for (auto& w : writers) w.join();
        log.wait_compacted();
        if (rule == fsync_rule::always) CHECK(log.report().fsync_p99_us > 0);  // they shared syncs
        compactions = log.report().compactions;
    }
    CHECK(compactions > 0);
    auto back = reopened(dir.path);
    CHECK(back.size() == 2000);
    CHECK(back == o.table);
}

TEST_CASE("under everysec and no, a lone writer's record is written before append returns") {
    const auto rule = GENERATE(fsync_rule::everysec, fsync_rule::no);
    temp_folder dir;
    owner o;
    write_ahead_log log(dir.path, with(rule), o.applier(), o.source());
    bool done = false;
    log.append("k", "v@1", [&](bool ok) { done = ok; });
    CHECK(done);  // no other thread's hand: the reply can leave in the same pass
    CHECK(log.report().log_bytes > log_header_size);
}

TEST_CASE("a torn tail is cut off and reported, the records before it are kept") {
    temp_folder dir;
    owner o;
    fill(dir.path, o, 10);
    const auto file = write_ahead_log::log_path(dir.path, 1);
    const auto size = std::filesystem::file_size(file);
    std::filesystem::resize_file(file, size - 3);  // a crash in the middle of the last write
    owner back;
    write_ahead_log log(dir.path, {}, back.applier(), back.source());
    CHECK(back.table.size() == 9);
    CHECK_FALSE(back.table.contains("k9"));
    REQUIRE(log.recovery().notes.size() == 1);
    CHECK_THAT(log.recovery().notes[0], Catch::Contains(file.string()) && Catch::Contains("torn tail at byte"));
    // And it appends after the cut, cleanly.
    write(log, back, 100, 5, 1000);
    log.stop();
    CHECK(reopened(dir.path) == back.table);
}

TEST_CASE("damage before the tail stops the opening, naming the file and offset, repair keeps what is before it") {
    temp_folder dir;
    owner o;
    fill(dir.path, o, 10);
    const auto file = write_ahead_log::log_path(dir.path, 1);
    std::string bytes;
    {
        std::ifstream in(file, std::ios::binary);
        bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    const auto victim = bytes.size() / 2;
    bytes[victim] ^= 0x20;
    std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;

    owner refused;
    try {
        write_ahead_log log(dir.path, {}, refused.applier(), refused.source());
        FAIL("opened a damaged log");
    } catch (const storage_error& e) {
        CHECK_THAT(e.what(), Catch::Contains(file.string()) && Catch::Contains("damaged at byte") && Catch::Contains("--repair"));
    }
    CHECK(std::filesystem::file_size(file) == bytes.size());  // refusing changes nothing

    owner repaired;
    write_ahead_log log(dir.path, with(fsync_rule::everysec, true), repaired.applier(), repaired.source());
    CHECK(repaired.table.size() > 0);
    CHECK(repaired.table.size() < 10);
    for (const auto& [k, e] : repaired.table) CHECK(o.table.at(k) == e);
    bool aside = false;
    for (const auto& f : std::filesystem::directory_iterator(dir.path))
        aside = aside || f.path().filename().string().starts_with("log.1.corrupt-at-");
    CHECK(aside);
}

TEST_CASE("compaction: a snapshot and the log after it replay to what the log alone did") {
    temp_folder dir;
    owner o;
    {
        write_ahead_log log(dir.path, {}, o.applier(), o.source());
        write(log, o, 0, 1000, 200);
        log.compact_now();
        write(log, o, 1000, 500, 300);  // writes go on while it runs
        log.wait_compacted();
        write(log, o, 1500, 100, 400);
        CHECK(log.report().compactions == 1);
        CHECK(log.report().last_snapshot_records > 0);
    }
    CHECK(std::filesystem::exists(write_ahead_log::snapshot_path(dir.path, 2)));
    CHECK_FALSE(std::filesystem::exists(write_ahead_log::log_path(dir.path, 1)));
    CHECK(reopened(dir.path) == o.table);
}

TEST_CASE("a crash between writing a snapshot and renaming it restarts cleanly and loses nothing") {
    temp_folder dir;
    owner o;
    {
        log_options opt;
        opt.before_snapshot_rename = [] { throw std::runtime_error("crash here"); };
        write_ahead_log log(dir.path, opt, o.applier(), o.source());
        write(log, o, 0, 300, 50);
        log.compact_now();
        log.wait_compacted();
        write(log, o, 300, 50, 60);
        CHECK(log.report().compactions == 0);
    }
    CHECK(std::filesystem::exists(write_ahead_log::log_path(dir.path, 1)));
    CHECK_FALSE(std::filesystem::exists(write_ahead_log::snapshot_path(dir.path, 2)));
    CHECK(reopened(dir.path) == o.table);
    for (const auto& f : std::filesystem::directory_iterator(dir.path)) CHECK(f.path().extension() != ".tmp");
}

TEST_CASE("a log cut at every byte of its last record reopens with that record whole or gone") {
    temp_folder dir;
    owner o;
    fill(dir.path, o, 20, with(fsync_rule::no));
    const auto file = write_ahead_log::log_path(dir.path, 1);
    std::string whole;
    {
        std::ifstream in(file, std::ios::binary);
        whole.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    auto without_last = o.table;
    without_last.erase("k19");
    const std::size_t last_start = whole.size() - (log_record_overhead + 3 + 6);  // key "k19", entry "v19@19"
    for (std::size_t cut = last_start; cut <= whole.size(); ++cut) {
        std::ofstream(file, std::ios::binary | std::ios::trunc).write(whole.data(), static_cast<std::streamsize>(cut));
        INFO("cut at " << cut);
        REQUIRE(reopened(dir.path) == (cut == whole.size() ? o.table : without_last));
        REQUIRE(std::filesystem::file_size(file) == (cut == whole.size() ? whole.size() : last_start));
    }
}
