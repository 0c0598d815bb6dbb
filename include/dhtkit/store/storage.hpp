#pragma once
// The storage policy: where a peer's records outlive its process. The table holds the entries;
// storage keeps each change (a key and its record, as the replicas exchange them) so that a
// restarted process finds what it acknowledged.
//
//   memory_storage   nothing is kept (the default; what the seed did): a restart relies on the
//                    replicas
//   log_storage      a write-ahead log with snapshots (store/write_ahead_log.hpp)
//   any_storage      either, as [storage] mode in the config says: chosen at run time
//
// A peer takes its storage as a template argument (peer.hpp; any_storage by default, which the
// example program uses so that the config file chooses); a program may fix one, or bring its own
// (tests/peer/storage_policy_test.cpp composes one that counts and holds every append).
// A write is acknowledged only once append()'s `done` said true: the peer holds its reply until
// then. With memory_storage `done` runs at once, and `keeps()` is false so that the caller can
// skip holding anything.

#include <concepts>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

#include "dhtkit/store/write_ahead_log.hpp"

namespace dhtkit {

struct storage_settings {
    bool log = false;  // [storage] mode = "log"
    fsync_rule sync = fsync_rule::everysec;
    std::uint64_t compact_after_bytes = 64u << 20;
    bool repair = false;  // the peer's --repair
};

// A record and its key, as the replicas exchange them; `snapshot_source` calls its argument for
// every record the table holds now (what a snapshot writes); `kept_fn` is told whether a record
// is kept. The same types as the write-ahead log's.
using replay_fn = std::function<void(std::string_view key, std::string_view record)>;
using snapshot_source = std::function<void(const replay_fn&)>;
using kept_fn = std::function<void(bool kept)>;
static_assert(std::is_same_v<replay_fn, write_ahead_log::entry_fn> && std::is_same_v<kept_fn, write_ahead_log::done_fn>);

// What `stats` shows of a storage: its mode and, for an open log, its rule and figures.
struct storage_figures {
    std::string mode = "memory";
    std::optional<fsync_rule> sync = std::nullopt;
    std::optional<log_figures::figures> log = std::nullopt;
};

// Everything the peer calls: made from the peer's data folder and its [storage] settings; open()
// replays what it kept into `apply` (recovery: the peer's table fills from it before the peer
// serves), and recovery() says what that replay found (null when nothing is kept); append()
// calls `done` once the record is kept (or could not be), on any thread, at most once.
template <class S>
concept storage_policy = std::constructible_from<S, std::filesystem::path, storage_settings> &&
                         requires(S& s, const S& cs, std::string_view key, std::string_view record, kept_fn done,
                                  const replay_fn& apply, snapshot_source source) {
                             s.open(apply, std::move(source));
                             { cs.keeps() } -> std::same_as<bool>;
                             s.append(key, record, std::move(done));
                             s.stop();
                             { cs.recovery() } -> std::same_as<const log_recovery*>;
                             { cs.report() } -> std::same_as<storage_figures>;
                         };

class memory_storage {
public:
    memory_storage() = default;
    memory_storage(const std::filesystem::path&, const storage_settings&) {}
    void open(const replay_fn&, const snapshot_source&) {}
    [[nodiscard]] bool keeps() const noexcept { return false; }
    void append(std::string_view, std::string_view, const kept_fn& done) {
        if (done) done(true);
    }
    void stop() {}
    [[nodiscard]] const log_recovery* recovery() const noexcept { return nullptr; }
    [[nodiscard]] storage_figures report() const { return {}; }
};

class log_storage {
public:
    log_storage(std::filesystem::path dir, storage_settings s) : dir_(std::move(dir)), settings_(s) {}

    void open(const replay_fn& apply, snapshot_source source) {
        log_options o;
        o.sync = settings_.sync;
        o.compact_after_bytes = settings_.compact_after_bytes;
        o.repair = settings_.repair;
        log_.emplace(dir_, std::move(o), apply, std::move(source));
    }
    [[nodiscard]] bool keeps() const noexcept { return true; }
    void append(std::string_view key, std::string_view record, kept_fn done) {
        if (!log_) {
            if (done) done(false);
            return;
        }
        log_->append(key, record, std::move(done));
    }
    void stop() {
        if (log_) log_->stop();
    }
    [[nodiscard]] const log_recovery* recovery() const { return log_ ? &log_->recovery() : nullptr; }
    [[nodiscard]] storage_figures report() const {
        if (!log_) return {"log"};
        return {"log", settings_.sync, log_->report()};
    }

private:
    std::filesystem::path dir_;
    storage_settings settings_;
    std::optional<write_ahead_log> log_;
};

// The storage the settings name, chosen when the peer starts.
class any_storage {
public:
    any_storage(std::filesystem::path dir, storage_settings s) {
        if (s.log) log_ = std::make_unique<log_storage>(std::move(dir), s);
    }
    void open(const replay_fn& apply, snapshot_source source) {
        if (log_) log_->open(apply, std::move(source));
    }
    [[nodiscard]] bool keeps() const noexcept { return log_ != nullptr; }
    void append(std::string_view key, std::string_view record, kept_fn done) {
        if (log_) log_->append(key, record, std::move(done));
        else memory_.append(key, record, done);
    }
    void stop() {
        if (log_) log_->stop();
    }
    [[nodiscard]] const log_recovery* recovery() const { return log_ ? log_->recovery() : nullptr; }
    [[nodiscard]] storage_figures report() const { return log_ ? log_->report() : memory_.report(); }

private:
    memory_storage memory_;
    std::unique_ptr<log_storage> log_;
};

static_assert(storage_policy<memory_storage>);
static_assert(storage_policy<log_storage>);
static_assert(storage_policy<any_storage>);

}  // namespace dhtkit
