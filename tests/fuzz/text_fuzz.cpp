// libFuzzer target for the decoders of what is not a frame: the records of a write-ahead log or a
// snapshot (store/log_format.hpp), a command line as the prompt splits it (app/commands.hpp), and
// RESP commands as a RESP client sends them (protocol/resp.hpp). The first byte picks which. A
// crash, a sanitizer report, a scan that claims more valid bytes than it was given, or a RESP
// reader that reads differently when the bytes arrive in two pieces is a finding.

#include <dhtkit/app/commands.hpp>
#include <dhtkit/protocol/resp.hpp>
#include <dhtkit/store/log_format.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
    switch (data[0] % 4) {
        case 0:
        case 1: {
            const auto magic = data[0] % 3 == 0 ? dhtkit::log_magic : dhtkit::snapshot_magic;
            std::string file(magic);
            file.append(input);
            std::size_t seen = 0;
            auto s = dhtkit::scan_log(file, magic, [&](std::string_view k, std::string_view e) { seen += k.size() + e.size(); });
            if (s.valid_bytes > file.size() || seen > file.size()) std::abort();
            if (s.how == dhtkit::log_scan::end::clean && s.valid_bytes != file.size()) std::abort();
            // What a scan accepted reads back the same when written again.
            std::string again(magic);
            (void)dhtkit::scan_log(std::string_view(file).substr(0, s.valid_bytes), magic,
                                   [&](std::string_view k, std::string_view e) { dhtkit::append_log_record(again, k, e); });
            if (again != std::string_view(file).substr(0, s.valid_bytes)) std::abort();
            break;
        }
        case 2: {
            auto p = dhtkit::parse_line(input);
            std::size_t letters = 0;
            for (const auto& w : p.words) letters += w.size();
            if (letters > input.size()) std::abort();
            break;
        }
        case 3: {
            // Small limits, so that the fuzzer reaches them; the split point comes from the data.
            const dhtkit::protocol::resp_limits lim{64, 16, 512, 128};
            auto read_all = [&](std::size_t split) {
                dhtkit::protocol::resp_reader r(lim);
                std::vector<std::string> out;
                std::vector<std::string_view> args;
                auto drain = [&] {
                    for (;;) {
                        auto res = r.next(args);
                        if (res == dhtkit::protocol::resp_reader::result::need_more) {
                            // What is not yet a command counts as buffered, parts already read
                            // included (the pump's bound before the password and idle clock
                            // rely on it), and never more than what was fed.
                            if (r.buffered() < r.fed() - r.consumed() || r.buffered() > r.fed()) std::abort();
                            return true;
                        }
                        if (res == dhtkit::protocol::resp_reader::result::error) {
                            out.push_back("error: " + r.last_error());
                            return false;
                        }
                        // An array's limits, or an inline line's (whose words are at most the line).
                        if (args.size() > std::max(lim.max_arguments, lim.max_inline_bytes)) std::abort();
                        std::string joined;
                        for (auto a : args) {
                            if (a.size() > std::max(lim.max_bulk_bytes, lim.max_inline_bytes)) std::abort();
                            joined += std::string(a) + '\0';
                        }
                        out.push_back(std::move(joined));
                    }
                };
                r.feed(input.substr(0, split));
                if (drain()) {
                    r.feed(input.substr(split));
                    drain();
                }
                return out;
            };
            if (input.empty()) break;
            if (read_all(input.size()) != read_all(data[0] / 4 % input.size())) std::abort();
            break;
        }
    }
    return 0;
}
