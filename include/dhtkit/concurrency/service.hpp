#pragma once
// The one lifecycle shape of the parts that own threads or descriptors (the replicator, the log,
// the file service, the failure detector, the healer, the lease keeper, dispatch): a part is
// built idle, start() (with whatever it needs then) sets it running, stop() ends what it runs and
// returns once its threads have, may be called more than once, and its destructor calls it.
//
// The composing code (peer/peer.hpp) notes each part in a service_stack as it starts it; the
// stack stops them in the reverse order, so a part is stopped before the parts it was started
// after and may use. A start that throws half-way stops what it had started, and so does the
// stack's destruction.

#include <concepts>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dhtkit {

// What the stack calls: a part that can be stopped, more than once.
template <class S>
concept service = requires(S& s) { s.stop(); };

class service_stack {
public:
    service_stack() = default;
    service_stack(const service_stack&) = delete;
    service_stack& operator=(const service_stack&) = delete;
    ~service_stack() { stop_all(); }

    // Runs `start_parts`, which notes each part as it starts it. If it throws, the parts it
    // started are stopped (the last first) before the exception goes on: a start that fails
    // leaves nothing running.
    template <class F>
    void start(F&& start_parts) {
        try {
            std::forward<F>(start_parts)();
        } catch (...) {
            stop_all();
            throw;
        }
    }

    // `part` has started: it is stopped before every part noted so far. A part noted twice is
    // stopped at the later place (its second stop does nothing).
    template <service S>
    void started(std::string_view name, S& part) {
        started(name, [&part] { part.stop(); });
    }
    // The same for a stop that is not one object's (a loop and the thread that runs it).
    void started(std::string_view name, std::function<void()> stop) {
        parts_.push_back({std::string(name), std::move(stop)});
    }

    // Stops every part noted, the last started first; the stack is empty after.
    void stop_all() {
        while (!parts_.empty()) {
            auto last = std::move(parts_.back());
            parts_.pop_back();
            last.stop();
        }
    }

    // The parts running, in the order they started (for a test, or a log line).
    [[nodiscard]] std::vector<std::string> running() const {
        std::vector<std::string> names;
        for (const auto& p : parts_) names.push_back(p.name);
        return names;
    }

private:
    struct part {
        std::string name;
        std::function<void()> stop;
    };
    std::vector<part> parts_;
};

}  // namespace dhtkit
