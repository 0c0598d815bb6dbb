#pragma once
// How locked_table stores one key and its value. The table keeps only a pointer per slot; the
// entry is one heap block, so a rehash moves pointers and never the data.
//
// The general entry holds a K and a V. Byte strings (std::string to std::string, the peer's case)
// get a packed entry: key and value bytes in the same block as their lengths, one allocation
// instead of three, and a value that is overwritten in place when it fits.

#include <cstdint>
#include <cstring>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace dhtkit {

template <class K, class V>
class table_entry {
public:
    using key_view = const K&;
    using value_view = const V&;

    static table_entry* make(key_view key, value_view value) { return new table_entry(key, value); }
    static void destroy(table_entry* e) noexcept { delete e; }
    // Replaces the value; returns the entry to keep in the slot (always `e` here).
    static table_entry* assign(table_entry* e, value_view value) {
        e->value_ = value;
        return e;
    }

    [[nodiscard]] key_view key() const noexcept { return key_; }
    [[nodiscard]] value_view value() const noexcept { return value_; }
    void copy_value_to(V& out) const { out = value_; }
    void prefetch() const noexcept { __builtin_prefetch(this); }

private:
    table_entry(key_view key, value_view value) : key_(key), value_(value) {}
    K key_;
    V value_;
};

template <>
class table_entry<std::string, std::string> {
public:
    using key_view = std::string_view;
    using value_view = std::string_view;

    static table_entry* make(key_view key, value_view value) {
        check_size(key.size(), "key");
        check_size(value.size(), "value");
        void* block = ::operator new(sizeof(table_entry) + key.size() + value.size());
        auto* e = ::new (block) table_entry(static_cast<std::uint32_t>(key.size()),
                                            static_cast<std::uint32_t>(value.size()));
        std::memcpy(e->bytes(), key.data(), key.size());
        std::memcpy(e->bytes() + key.size(), value.data(), value.size());
        return e;
    }
    static void destroy(table_entry* e) noexcept {
        e->~table_entry();
        ::operator delete(static_cast<void*>(e));
    }
    static table_entry* assign(table_entry* e, value_view value) {
        if (value.size() <= e->value_capacity_) {
            std::memcpy(e->bytes() + e->key_size_, value.data(), value.size());
            e->value_size_ = static_cast<std::uint32_t>(value.size());
            return e;
        }
        table_entry* bigger = make(e->key(), value);
        destroy(e);
        return bigger;
    }

    [[nodiscard]] key_view key() const noexcept { return {bytes(), key_size_}; }
    [[nodiscard]] value_view value() const noexcept { return {bytes() + key_size_, value_size_}; }
    void copy_value_to(std::string& out) const { out.assign(bytes() + key_size_, value_size_); }

    // Asks for the block's first cache lines at once: the key comparison needs the first, and a
    // hit goes on to copy the value from the next ones, so their misses overlap instead of queuing.
    void prefetch() const noexcept {
        const char* p = reinterpret_cast<const char*>(this);
        const std::size_t span = sizeof(table_entry) + key_size_ + value_size_;
        __builtin_prefetch(p + 64);
        if (span > 128) __builtin_prefetch(p + 128);
    }

private:
    table_entry(std::uint32_t key_size, std::uint32_t value_size) noexcept
        : key_size_(key_size), value_size_(value_size), value_capacity_(value_size) {}

    static void check_size(std::size_t n, const char* what) {
        if (n > std::numeric_limits<std::uint32_t>::max())
            throw std::length_error(std::string("locked_table: ") + what + " longer than 4 GiB");
    }

    char* bytes() noexcept { return reinterpret_cast<char*>(this + 1); }
    const char* bytes() const noexcept { return reinterpret_cast<const char*>(this + 1); }

    std::uint32_t key_size_;
    std::uint32_t value_size_;
    std::uint32_t value_capacity_;
};

}  // namespace dhtkit
