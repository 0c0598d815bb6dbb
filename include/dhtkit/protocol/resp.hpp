#pragma once
// RESP2, the Redis serialization protocol, as a second wire format beside our frames: what
// redis-cli, redis-benchmark and Redis client libraries speak.
//
//   resp_reader   splits the bytes a client sent into commands: arrays of bulk strings
//                 (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`) or inline lines (`GET k\r\n`, as typed through
//                 nc). Limits are checked before anything of the claimed size is kept: a bulk
//                 longer than the largest key or value, an array of more than max_arguments, a
//                 command over max_command_bytes, an inline line over 64 KiB are errors worded as
//                 Redis words them, and the connection is closed once the error has gone.
//   resp          encoders for replies.
//
// A partly received command is kept as it is parsed (offsets into the buffer), so a large
// command that arrives in many reads is scanned once.

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <utility>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

namespace dhtkit::protocol {

namespace resp {

inline void simple(std::string& out, std::string_view s) {
    out += '+';
    out += s;
    out += "\r\n";
}
// `message` starts with the error's kind (ERR, WRONGTYPE, MOVED...), as Redis's do. Line breaks in
// it would end the reply early: they become spaces.
inline void error(std::string& out, std::string_view message) {
    out += '-';
    for (char ch : message) out += (ch == '\r' || ch == '\n') ? ' ' : ch;
    out += "\r\n";
}
inline void integer(std::string& out, std::int64_t v) {
    fmt::format_to(std::back_inserter(out), ":{}\r\n", v);
}
inline void bulk(std::string& out, std::string_view s) {
    fmt::format_to(std::back_inserter(out), "${}\r\n", s.size());
    out += s;
    out += "\r\n";
}
inline void null_bulk(std::string& out) { out += "$-1\r\n"; }
inline void array(std::string& out, std::size_t n) { fmt::format_to(std::back_inserter(out), "*{}\r\n", n); }

}  // namespace resp

struct resp_limits {
    std::size_t max_bulk_bytes = (1 << 20) + 1024;  // the largest key or value, and a little
    std::size_t max_arguments = 1 << 20;
    std::size_t max_command_bytes = 64u << 20;
    std::size_t max_inline_bytes = 64 * 1024;
};

class resp_reader {
public:
    enum class result { command, need_more, error };

    explicit resp_reader(resp_limits lim = {}) : limits_(lim) {}

    void feed(std::string_view bytes) {
        compact();
        buffer_.append(bytes);
    }

    // The next whole command: its arguments point into this reader until the next feed() or
    // next(). On `error`, last_error() says why (a reply for the client, without the "-").
    result next(std::vector<std::string_view>& args) {
        args.clear();
        if (!error_.empty()) return result::error;
        while (state_ == state::start) {
            while (pos_ < buffer_.size() && (buffer_[pos_] == '\r' || buffer_[pos_] == '\n')) ++pos_;  // blank lines
            if (pos_ == buffer_.size()) return result::need_more;
            if (buffer_[pos_] != '*') {
                const auto r = next_inline(args);
                if (r == result::command && args.empty()) continue;  // a line of blanks: nothing to do
                return r;
            }
            const auto line = read_line(limits_.max_inline_bytes);
            if (!line) return need_more_or_error("Protocol error: too big count");
            std::int64_t n = 0;
            if (!to_int(line->substr(1), n) || n > static_cast<std::int64_t>(limits_.max_arguments))
                return fail("Protocol error: invalid multibulk length");
            command_start_ = start_of_line_;
            if (n <= 0) continue;  // *0 and *-1: nothing to do, as Redis reads them
            left_ = static_cast<std::size_t>(n);
            parts_.clear();
            state_ = state::bulk_header;
        }
        while (left_ > 0) {
            if (pos_ - command_start_ > limits_.max_command_bytes) return fail("Protocol error: command too large");
            if (state_ == state::bulk_header) {
                const auto line = read_line(64);
                if (!line) return need_more_or_error("Protocol error: invalid bulk length");
                if ((*line)[0] != '$')
                    return fail(fmt::format("Protocol error: expected '$', got '{}'", printable((*line)[0])));
                std::int64_t len = 0;
                if (!to_int(line->substr(1), len) || len < 0 || static_cast<std::size_t>(len) > limits_.max_bulk_bytes)
                    return fail("Protocol error: invalid bulk length");
                bulk_length_ = static_cast<std::size_t>(len);
                state_ = state::bulk_body;
            }
            if (buffer_.size() - pos_ < bulk_length_ + 2) return result::need_more;
            if (buffer_[pos_ + bulk_length_] != '\r' || buffer_[pos_ + bulk_length_ + 1] != '\n')
                return fail("Protocol error: bulk string not followed by CRLF");
            parts_.push_back({pos_, bulk_length_});
            pos_ += bulk_length_ + 2;
            --left_;
            state_ = state::bulk_header;
        }
        state_ = state::start;
        for (auto [at, n] : parts_) args.emplace_back(buffer_.data() + at, n);
        return result::command;
    }

    [[nodiscard]] const std::string& last_error() const noexcept { return error_; }
    // Bytes not yet returned as a command: from the start of the one being read, whose parts
    // already read count too (a command sent half-way is not "nothing buffered").
    [[nodiscard]] std::size_t buffered() const noexcept {
        return buffer_.size() - (state_ == state::start ? pos_ : command_start_);
    }
    // Bytes fed so far, and bytes read past (the end of the last command returned), counted from
    // the reader's first byte: where a command ended in the stream.
    [[nodiscard]] std::uint64_t fed() const noexcept { return dropped_ + buffer_.size(); }
    [[nodiscard]] std::uint64_t consumed() const noexcept { return dropped_ + pos_; }
    // Gives back an idle reader's memory.
    void release_if_empty() {
        if (state_ == state::start && pos_ == buffer_.size() && buffer_.capacity() > 64 * 1024) {
            dropped_ += pos_;
            std::string().swap(buffer_);
            pos_ = 0;
        }
    }

private:
    enum class state { start, bulk_header, bulk_body };

    // A command typed as a line: words split on spaces and tabs, "..." and '...' quoted as
    // redis-cli would send them.
    result next_inline(std::vector<std::string_view>& args) {
        const auto line = read_line(limits_.max_inline_bytes);
        if (!line) return need_more_or_error("Protocol error: too big inline request");
        inline_words_.clear();
        std::string word;
        bool in_word = false;
        for (std::size_t i = 0; i < line->size(); ++i) {
            const char ch = (*line)[i];
            if (ch == '"' || ch == '\'') {
                const char quote = ch;
                bool closed = false;
                for (++i; i < line->size(); ++i) {
                    if ((*line)[i] == quote) {
                        closed = true;
                        break;
                    }
                    if (quote == '"' && (*line)[i] == '\\' && i + 1 < line->size()) ++i;
                    word += (*line)[i];
                }
                if (!closed) return fail("Protocol error: unbalanced quotes in request");
                in_word = true;
            } else if (ch == ' ' || ch == '\t') {
                if (in_word) inline_words_.push_back(std::move(word));
                word.clear();
                in_word = false;
            } else {
                word += ch;
                in_word = true;
            }
        }
        if (in_word) inline_words_.push_back(std::move(word));
        for (const auto& w : inline_words_) args.emplace_back(w);
        return result::command;
    }

    // The line at pos_ without its CRLF (or LF, for inline), advancing past it; nothing when the
    // line is not whole yet (an error once it is longer than `max`).
    std::optional<std::string_view> read_line(std::size_t max) {
        const auto end = buffer_.find('\n', pos_);
        if (end == std::string::npos) {
            line_too_long_ = buffer_.size() - pos_ > max;
            return std::nullopt;
        }
        line_too_long_ = end - pos_ > max;
        if (line_too_long_) return std::nullopt;
        std::string_view line(buffer_.data() + pos_, end - pos_);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        start_of_line_ = pos_;
        pos_ = end + 1;
        if (line.empty()) line = std::string_view("\r", 1);  // a bare CRLF where a header belongs: not a number
        return line;
    }

    result need_more_or_error(std::string why) { return line_too_long_ ? fail(std::move(why)) : result::need_more; }
    result fail(std::string why) {
        error_ = std::move(why);
        return result::error;
    }

    static bool to_int(std::string_view s, std::int64_t& v) {
        auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
        return ec == std::errc() && p == s.data() + s.size() && !s.empty();
    }
    static char printable(char c) { return c >= 32 && c < 127 ? c : '?'; }

    // Moves the unparsed bytes to the front when no command is half parsed (offsets stay valid).
    void compact() {
        if (state_ != state::start || pos_ == 0) return;
        if (pos_ < 4096 && pos_ * 2 < buffer_.size()) return;
        buffer_.erase(0, pos_);
        dropped_ += pos_;
        pos_ = 0;
    }

    resp_limits limits_;
    std::uint64_t dropped_ = 0;  // bytes compacted away before buffer_[0]
    std::string buffer_;
    std::size_t pos_ = 0;
    state state_ = state::start;
    std::size_t left_ = 0;            // bulks still to come of the current array
    std::size_t bulk_length_ = 0;
    std::size_t command_start_ = 0;
    std::size_t start_of_line_ = 0;
    bool line_too_long_ = false;
    std::vector<std::pair<std::size_t, std::size_t>> parts_;  // offset, length
    std::vector<std::string> inline_words_;
    std::string error_;
};

}  // namespace dhtkit::protocol

namespace dhtkit::protocol {

// When the bytes of a connection arrived, so that a command is stamped with the moment it reached
// this host, not the moment it ran (it may wait behind a held reply, or in a stopped process's
// socket, while its client gives up and writes again elsewhere).
class arrival_stamps {
public:
    // Bytes up to stream offset `end` had all arrived at `unix_us`; kept non-decreasing.
    void note(std::uint64_t end, std::uint64_t unix_us) {
        if (!marks_.empty()) unix_us = std::max(unix_us, marks_.back().second);
        marks_.emplace_back(end, unix_us);
    }
    // When the byte before stream offset `end` arrived (0 when no bytes were noted).
    [[nodiscard]] std::uint64_t at(std::uint64_t end) {
        while (marks_.size() > 1 && marks_.front().first < end) marks_.pop_front();
        return marks_.empty() ? 0 : marks_.front().second;
    }

private:
    std::deque<std::pair<std::uint64_t, std::uint64_t>> marks_;  // (end offset, unix us), both rising
};

}  // namespace dhtkit::protocol
