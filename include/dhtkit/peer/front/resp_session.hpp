#pragma once
// A RESP connection's state (its reader, when its bytes arrived, the batch being answered) and
// what the RESP front asks of the peer that composes it.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "dhtkit/peer/connection.hpp"
#include "dhtkit/peer/front/resp_replies.hpp"
#include "dhtkit/peer/figures.hpp"
#include "dhtkit/peer/pump.hpp"
#include "dhtkit/peer/reply.hpp"
#include "dhtkit/protocol/frame.hpp"
#include "dhtkit/protocol/resp.hpp"
#include "dhtkit/store/versioned.hpp"

namespace dhtkit {

// What the RESP front asks of the peer that composes it.
struct resp_context {
    // Answers one of our requests on the connection, as the binary front does for its clients.
    std::function<void(const protocol::frame_view&, connection&)> answer;
    std::function<figures()> stats;          // the node's figures, for INFO
    std::function<std::size_t()> key_count;  // DBSIZE: live keys held here (a walk over the table)
    std::string appendonly;                  // CONFIG GET appendonly: "yes" with a log
    // With [resp] route = "forward": asks the key's holders (home first) one of our requests and
    // waits for the reply. Run on the front's own threads, never on a worker. Empty: -MOVED.
    std::function<reply(protocol::opcode, std::string_view key, std::string_view value, std::uint8_t flags)> forward;
    // DHT.REGISTER / DHT.UNREGISTER: this peer registers a file of its shared folder (or withdraws
    // it), as the prompt's register does. They wait on the network: run on the front's threads.
    std::function<reply(std::string_view name)> announce, withdraw;
    // A wrong password came (AUTH, HELLO ... AUTH): counted; the connection closes after its answer.
    std::function<void()> wrong_password;
};

// A RESP connection's state: its reader, when its bytes arrived, and the batch being answered.
struct resp_session {
    explicit resp_session(protocol::resp_limits lim) : reader(lim) {}
    protocol::resp_reader reader;
    protocol::arrival_stamps arrivals;
    std::uint64_t command_arrived_us = 0;  // of the command being run
    std::vector<resp_replies::plan> plans;  // of the batch being answered, in order
    std::string name;                        // CLIENT SETNAME

    // `arrived_us`: the kernel's moment when it gave one; else now, which is no earlier than arrival.
    void feed(std::string_view bytes, std::uint64_t arrived_us) {
        reader.feed(bytes);
        arrivals.note(reader.fed(), arrived_us ? arrived_us : stamp_now());
    }
    parsed next(std::vector<std::string_view>& args) {
        switch (reader.next(args)) {
            case protocol::resp_reader::result::need_more: return parsed::need_more;
            case protocol::resp_reader::result::error: return parsed::error;
            case protocol::resp_reader::result::command: break;
        }
        command_arrived_us = arrivals.at(reader.consumed());
        return parsed::request;
    }
    [[nodiscard]] std::size_t buffered() const noexcept { return reader.buffered(); }
    void release_if_empty() { reader.release_if_empty(); }
};

}  // namespace dhtkit
