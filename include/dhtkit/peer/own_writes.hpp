#pragma once
// A client's memory of its own acknowledged writes, for read-your-writes: the version of the
// last put or del of each key it wrote, so that a read answered by a holder that has not applied
// that write yet (it excused a grantor that was only too busy to answer a lease request, say) is
// recognised as older and asked of the next holder instead of returned.
//
// Bounded: past `capacity` keys the oldest are forgotten, and reads of those keys are taken as
// they come (as every read was before this existed). Thread-safe: one client serves many callers.

#include <cstddef>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "dhtkit/store/versioned.hpp"

namespace dhtkit {

class own_writes {
public:
    struct write {
        dhtkit::version version;
        bool deleted = false;
    };

    explicit own_writes(std::size_t capacity = 100'000) : capacity_(capacity) {}

    // `key`'s write at `v` was acknowledged.
    void acknowledged(std::string_view key, const version& v, bool deleted) {
        std::lock_guard lock(mutex_);
        auto [it, fresh] = last_.try_emplace(std::string(key), write{v, deleted});
        if (!fresh) {
            if (it->second.version < v) it->second = {v, deleted};
            return;
        }
        order_.push_back(it->first);
        while (last_.size() > capacity_ && !order_.empty()) {
            last_.erase(order_.front());
            order_.pop_front();
        }
    }

    [[nodiscard]] std::optional<write> last(std::string_view key) const {
        std::lock_guard lock(mutex_);
        auto it = last_.find(std::string(key));
        if (it == last_.end()) return std::nullopt;
        return it->second;
    }

    // Whether a read that found an entry at `seen` (a value, or with `gone` a tombstone or an
    // expired value; nothing: the holder has no entry at all) is older than this client's own
    // last write of the key. A holder with no entry has not seen an own put; it has an own delete's
    // effect (the key is absent), and a delete newer than an own put is no older than it.
    [[nodiscard]] bool older_than_own(std::string_view key, const std::optional<version>& seen, bool gone) const {
        auto mine = last(key);
        if (!mine) return false;
        if (!seen) return !(gone && mine->deleted);
        return *seen < mine->version;
    }

private:
    std::size_t capacity_;
    mutable std::mutex mutex_;
    std::unordered_map<std::string, write> last_;  // guarded by mutex_
    std::deque<std::string> order_;               // guarded by mutex_: first written first forgotten
};

}  // namespace dhtkit
