#pragma once
// A move-only `void()` callable. Unlike std::function it holds move-only callables (a lambda that
// owns a std::promise), and it keeps small ones inline so that queuing a tiny task allocates
// nothing.

#include <cstddef>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

namespace dhtkit {

class task {
public:
    static constexpr std::size_t inline_size = 48;

    task() noexcept = default;

    template <class F>
        requires(!std::is_same_v<std::decay_t<F>, task> && std::is_invocable_v<std::decay_t<F>&>)
    task(F&& f) {  // NOLINT: implicit on purpose, like std::function
        using fn = std::decay_t<F>;
        if constexpr (fits_inline<fn>) {
            ::new (static_cast<void*>(storage_)) fn(std::forward<F>(f));
            ops_ = &inline_ops<fn>;
        } else {
            ::new (static_cast<void*>(storage_)) fn*(new fn(std::forward<F>(f)));
            ops_ = &heap_ops<fn>;
        }
    }

    task(task&& other) noexcept : ops_(other.ops_) {
        if (ops_) ops_->move(other.storage_, storage_);
        other.ops_ = nullptr;
    }
    task& operator=(task&& other) noexcept {
        if (this != &other) {
            reset();
            ops_ = other.ops_;
            if (ops_) ops_->move(other.storage_, storage_);
            other.ops_ = nullptr;
        }
        return *this;
    }
    task(const task&) = delete;
    task& operator=(const task&) = delete;
    ~task() { reset(); }

    explicit operator bool() const noexcept { return ops_ != nullptr; }
    void operator()() { ops_->call(storage_); }

    void reset() noexcept {
        if (ops_) ops_->destroy(storage_);
        ops_ = nullptr;
    }

private:
    struct operations {
        void (*call)(std::byte*);
        void (*move)(std::byte* from, std::byte* to) noexcept;  // leaves `from` destroyed
        void (*destroy)(std::byte*) noexcept;
    };

    template <class Fn>
    static constexpr bool fits_inline = sizeof(Fn) <= inline_size &&
                                        alignof(Fn) <= alignof(std::max_align_t) &&
                                        std::is_nothrow_move_constructible_v<Fn>;

    template <class Fn>
    static Fn* as(std::byte* p) noexcept { return std::launder(reinterpret_cast<Fn*>(p)); }

    template <class Fn>
    static constexpr operations inline_ops{
        [](std::byte* p) { (*as<Fn>(p))(); },
        [](std::byte* from, std::byte* to) noexcept {
            ::new (static_cast<void*>(to)) Fn(std::move(*as<Fn>(from)));
            as<Fn>(from)->~Fn();
        },
        [](std::byte* p) noexcept { as<Fn>(p)->~Fn(); },
    };

    template <class Fn>
    static constexpr operations heap_ops{
        [](std::byte* p) { (**as<Fn*>(p))(); },
        [](std::byte* from, std::byte* to) noexcept {
            ::new (static_cast<void*>(to)) Fn*(*as<Fn*>(from));
        },
        [](std::byte* p) noexcept { delete *as<Fn*>(p); },
    };

    alignas(std::max_align_t) std::byte storage_[inline_size];
    const operations* ops_ = nullptr;
};

}  // namespace dhtkit
