#pragma once
// Work that waits on the network (a request forwarded to a key's holders, this peer's own
// registration of a file), run on a few threads of its own instead of a worker's event loop. Its
// reply is held in its place in the connection's output until the work is done (connection.hpp),
// as the outcome of the request's opcode.

#include <cstddef>
#include <memory>
#include <string_view>
#include <utility>

#include "dhtkit/concurrency/thread_pool.hpp"
#include "dhtkit/peer/connection.hpp"
#include "dhtkit/peer/reply.hpp"
#include "dhtkit/protocol/frame.hpp"

namespace dhtkit {

class held_work {
public:
    explicit held_work(std::size_t threads) : pool_(std::make_unique<thread_pool>(threads)) {}

    // Runs `work` (a function returning a `reply`) for the request of `op` answered on `c`.
    template <class Work>
    void run(connection& c, protocol::opcode op, Work work) {
        auto held = c.hold();
        auto conn = c.shared_from_this();
        auto job = [held, conn, op, work = std::move(work)] {
            const reply r = work();
            const auto code = r.answered ? r.code : protocol::status::unavailable;
            std::string_view why = r.value.empty() ? std::string_view(r.error) : std::string_view(r.value);
            held->answer.emplace(protocol::header{op, 0, code, 0, 0, 0}, r.ok() ? std::string_view(r.value) : why);
            conn->release();
        };
        if (!pool_->post(std::move(job))) {  // stopping
            held->answer.emplace(protocol::header{op, 0, protocol::status::unavailable, 0, 0, 0}, "this peer is stopping");
            conn->release();
        }
    }

private:
    std::unique_ptr<thread_pool> pool_;
};

}  // namespace dhtkit
