#pragma once
// Splits a byte stream into frames. Bytes are read straight into the reader's buffer; a frame is
// handed out as views into it, valid until the next call that changes the buffer. The buffer never
// grows past one header plus the largest payload the limits allow, so a client cannot make a
// peer allocate more by sending a large length.

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

#include "dhtkit/protocol/frame.hpp"

namespace dhtkit::protocol {

struct frame_view {
    header h;
    std::string_view key;
    std::string_view value;
};

class frame_reader {
public:
    explicit frame_reader(limits lim = {}) : limits_(lim) {}

    enum class result { frame, need_more, error };

    // Room for at least `n` more bytes; pass the count actually read to commit().
    std::span<std::byte> prepare(std::size_t n) {
        compact();
        if (buffer_.size() - end_ < n) buffer_.resize(end_ + n);
        return {reinterpret_cast<std::byte*>(buffer_.data()) + end_, n};
    }
    void commit(std::size_t n) noexcept { end_ += n; }

    // Copies `bytes` in (for callers that already hold the data).
    void feed(std::string_view bytes) {
        auto room = prepare(bytes.size());
        std::memcpy(room.data(), bytes.data(), bytes.size());
        commit(bytes.size());
    }

    // The next whole frame, if the buffer holds one. After `error`, `last_error()` says why and
    // the stream is out of step: the caller answers and closes.
    result next(frame_view& out) {
        const std::size_t available = end_ - start_;
        if (available < header_size) return result::need_more;
        auto head = std::span<const std::byte, header_size>(
            reinterpret_cast<const std::byte*>(buffer_.data()) + start_, header_size);
        decoded_header d = decode(head, limits_);
        if (d.error != header_error::none) {
            error_ = d.error;
            error_header_ = d.h;
            return result::error;
        }
        if (available < header_size + d.h.payload_size()) return result::need_more;
        const char* payload = buffer_.data() + start_ + header_size;
        out.h = d.h;
        out.key = {payload, d.h.key_length};
        out.value = {payload + d.h.key_length, d.h.value_length};
        start_ += header_size + d.h.payload_size();
        return result::frame;
    }

    // Gives the buffer's memory back when nothing is buffered, so that thousands of idle
    // connections cost a few bytes each rather than their largest request.
    void release_if_empty(std::size_t keep = 4096) {
        if (start_ != end_) return;
        start_ = end_ = 0;
        if (buffer_.capacity() > keep) std::string().swap(buffer_);
    }

    // Moves up to into.size() buffered bytes that follow the last frame handed out (raw bytes sent
    // after a frame, such as a file's content) into `into`; returns how many.
    std::size_t take_raw(std::span<std::byte> into) noexcept {
        std::size_t n = std::min(into.size(), end_ - start_);
        std::memcpy(into.data(), buffer_.data() + start_, n);
        start_ += n;
        return n;
    }

    [[nodiscard]] header_error last_error() const noexcept { return error_; }
    // The header fields of the rejected frame that could be read (its request id, for the reply).
    [[nodiscard]] const header& error_header() const noexcept { return error_header_; }
    [[nodiscard]] std::size_t buffered() const noexcept { return end_ - start_; }
    [[nodiscard]] std::size_t reserved_bytes() const noexcept { return buffer_.capacity(); }
    [[nodiscard]] const limits& frame_limits() const noexcept { return limits_; }

private:
    void compact() {
        if (start_ == 0) return;
        std::memmove(buffer_.data(), buffer_.data() + start_, end_ - start_);
        end_ -= start_;
        start_ = 0;
    }

    limits limits_;
    std::string buffer_;
    std::size_t start_ = 0;
    std::size_t end_ = 0;
    header_error error_ = header_error::none;
    header error_header_{};
};

}  // namespace dhtkit::protocol
