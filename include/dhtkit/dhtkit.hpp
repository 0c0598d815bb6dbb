#pragma once
// The public surface of dhtkit's core. app/config.hpp is left out: it needs toml++
// (link dhtkit::app and include it directly).

#include "dhtkit/concurrency/locks.hpp"
#include "dhtkit/concurrency/task.hpp"
#include "dhtkit/concurrency/thread_pool.hpp"
#include "dhtkit/net/address.hpp"
#include "dhtkit/net/reactor.hpp"
#include "dhtkit/net/socket.hpp"
#include "dhtkit/net/unique_fd.hpp"
#include "dhtkit/store/locked_table.hpp"
#include "dhtkit/store/stable_hash.hpp"
#include "dhtkit/store/table_entry.hpp"
