#pragma once
// What changes for one node between two maps of a live cluster: pure functions of the two maps,
// with no I/O, so that each rule has a unit test of its own.
//
//   changes()      the slots the node gains (each run with the nodes to catch it up from), whether
//                  the placed nodes changed (slots and file copies move), the members back from
//                  being taken for dead or departed, and whether any member was declared so.
//   slots_of()     how many slots a node is the home of, and holds.

#include <algorithm>
#include <cstddef>
#include <utility>
#include <vector>

#include "dhtkit/cluster/cluster_map.hpp"
#include "dhtkit/cluster/membership.hpp"
#include "dhtkit/cluster/slots.hpp"

namespace dhtkit {

// Slots to catch up, each run with the nodes to ask.
using gained_slots = std::vector<std::pair<slot_range, std::vector<node>>>;

struct map_changes {
    gained_slots gained;
    bool placement_moved = false;  // the nodes the map places slots on changed
    std::vector<node_id> back;     // placed again after being taken for dead (or departed)
    bool declared_dead = false;    // a member placed before is not any more
};

// The nodes a map places slots on, in map order.
[[nodiscard]] inline std::vector<node_id> placed_ids(const cluster_map& m) {
    std::vector<node_id> out;
    for (const auto& n : m.nodes())
        if (placed(n.state)) out.push_back(n.id);
    return out;
}

// The slots `after` has `self` hold and `before` did not (all of them when it was not placed
// before: back from being taken for dead, it missed what was written meanwhile), each run of
// slots with the nodes to ask: its holders before that are still placed, and the other holders
// after, in id order. Neighbouring slots with the same nodes to ask form one run.
[[nodiscard]] inline gained_slots gained_by(const cluster_map& before, const cluster_map& after, node_id self) {
    gained_slots out;
    std::vector<node_id> ids;
    for (std::size_t s = 0; s < slot_count; ++s) {
        const auto slot = static_cast<slot_t>(s);
        if (!after.holds(self, slot) || before.holds(self, slot)) continue;
        ids.clear();
        for (auto id : before.holders(slot))
            if (const node* n = after.find(id); n && placed(n->state)) ids.push_back(id);
        for (auto id : after.holders(slot))
            if (id != self && std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
        std::sort(ids.begin(), ids.end());
        if (!out.empty() && out.back().first.last + 1u == s) {
            const auto& last = out.back().second;
            if (std::equal(last.begin(), last.end(), ids.begin(), ids.end(),
                           [](const node& n, node_id id) { return n.id == id; })) {
                out.back().first.last = slot;
                continue;
            }
        }
        std::vector<node> from;
        for (auto id : ids) from.push_back(*after.find(id));
        out.push_back({{slot, slot}, std::move(from)});
    }
    return out;
}

// Everything `self` acts on when its view goes from `before` to `after`.
[[nodiscard]] inline map_changes changes(const cluster_map& before, const cluster_map& after, node_id self) {
    map_changes c;
    c.gained = gained_by(before, after, self);
    c.placement_moved = placed_ids(before) != placed_ids(after);
    for (const auto& n : after.nodes()) {
        const node* was = before.find(n.id);
        if (!was || n.id == self || placed(n.state) == placed(was->state)) continue;
        if (placed(n.state)) c.back.push_back(n.id);
        else c.declared_dead = true;
    }
    return c;
}

struct slot_counts {
    std::size_t home = 0;  // slots whose first holder is the node
    std::size_t held = 0;  // slots it holds, home or backup
};

[[nodiscard]] inline slot_counts slots_of(const cluster_map& m, node_id self) {
    slot_counts out;
    for (std::size_t s = 0; s < slot_count; ++s) {
        auto h = m.holders(static_cast<slot_t>(s));
        if (!h.empty() && h.front() == self) ++out.home;
        if (std::find(h.begin(), h.end(), self) != h.end()) ++out.held;
    }
    return out;
}

}  // namespace dhtkit
