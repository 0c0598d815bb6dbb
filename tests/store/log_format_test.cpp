#include <catch2/catch.hpp>

#include <dhtkit/store/log_format.hpp>

#include <string>
#include <utility>
#include <vector>

using namespace dhtkit;

namespace {

using records = std::vector<std::pair<std::string, std::string>>;

records sample() {
    records r;
    for (int i = 0; i < 5; ++i) r.emplace_back("key" + std::to_string(i), std::string(static_cast<std::size_t>(i * 7), 'a' + static_cast<char>(i)));
    r.emplace_back("", "an empty key is still a record");
    r.emplace_back("k", std::string(70000, 'z'));
    return r;
}

std::string file_of(const records& rs, std::vector<std::size_t>* starts = nullptr) {
    std::string bytes(log_magic);
    for (const auto& [k, v] : rs) {
        if (starts) starts->push_back(bytes.size());
        append_log_record(bytes, k, v);
    }
    return bytes;
}

records read_back(std::string_view bytes, log_scan& s) {
    records got;
    s = scan_log(bytes, log_magic, [&](std::string_view k, std::string_view v) { got.emplace_back(k, v); });
    return got;
}

}  // namespace

TEST_CASE("log records read back as they were written") {
    const auto rs = sample();
    log_scan s;
    auto bytes = file_of(rs);
    CHECK(read_back(bytes, s) == rs);
    CHECK(s.how == log_scan::end::clean);
    CHECK(s.records == rs.size());
    CHECK(s.valid_bytes == bytes.size());
    // A snapshot's bytes are not a log's, and the other way round.
    CHECK(scan_log(bytes, snapshot_magic, [](auto, auto) {}).how == log_scan::end::bad_header);
}

TEST_CASE("a log cut at any byte of its last record reads as a torn tail: the record whole or gone") {
    const auto rs = sample();
    std::vector<std::size_t> starts;
    const auto bytes = file_of(rs, &starts);
    const std::size_t last = starts.back();
    for (std::size_t cut = last; cut <= bytes.size(); ++cut) {
        log_scan s;
        auto got = read_back(std::string_view(bytes).substr(0, cut), s);
        if (cut == bytes.size()) {
            REQUIRE(s.how == log_scan::end::clean);
            REQUIRE(got == rs);
        } else {
            INFO("cut at " << cut);
            REQUIRE(got == records(rs.begin(), rs.end() - 1));
            REQUIRE(s.valid_bytes == last);
            REQUIRE(s.how == (cut == last ? log_scan::end::clean : log_scan::end::torn_tail));
        }
    }
}

TEST_CASE("a flipped byte before the tail is corruption, named by the offset of its record") {
    const auto rs = sample();
    std::vector<std::size_t> starts;
    const auto bytes = file_of(rs, &starts);
    for (std::size_t victim = 0; victim + 1 < rs.size(); ++victim) {
        // In the length, its check, the checksum, and the body.
        for (std::size_t within : {std::size_t{0}, std::size_t{2}, std::size_t{5}, std::size_t{13}, std::size_t{17}}) {
            auto bad = bytes;
            bad[starts[victim] + within] ^= 0x40;
            log_scan s;
            auto got = read_back(bad, s);
            INFO("record " << victim << ", byte " << within);
            CHECK(s.how == log_scan::end::corrupt);
            CHECK(s.valid_bytes == starts[victim]);
            CHECK(got == records(rs.begin(), rs.begin() + static_cast<std::ptrdiff_t>(victim)));
        }
    }
    // The same flip in the last record is a torn tail: nothing after it to lose.
    auto bad = bytes;
    bad[starts.back() + 20] ^= 1;
    log_scan s;
    read_back(bad, s);
    CHECK(s.how == log_scan::end::torn_tail);
    CHECK(s.valid_bytes == starts.back());
}

TEST_CASE("a flipped length reads as damage, even in the last record, zeros after the last record are a torn tail") {
    const auto rs = sample();
    std::vector<std::size_t> starts;
    const auto bytes = file_of(rs, &starts);
    auto bad = bytes;
    bad[starts.back() + 1] ^= 0x10;  // a length that would run past the end of the file
    log_scan s;
    read_back(bad, s);
    CHECK(s.how == log_scan::end::corrupt);
    CHECK(s.valid_bytes == starts.back());

    auto padded = bytes + std::string(4096, '\0');  // a power cut's zeroed blocks past the last write
    auto got = read_back(padded, s);
    CHECK(s.how == log_scan::end::torn_tail);
    CHECK(s.valid_bytes == bytes.size());
    CHECK(got == rs);
}
