#pragma once
// A catch-up's plan: the groups of slots to catch up, each with the other holders to ask, and the
// sources, each holder with the ranges it is asked for and how its last stream ended
// (cluster/catch_up.hpp). Which groups are caught up follows from the sources' outcomes alone, so
// the rule is here, without a network: a group is caught up by a complete stream from a holder
// that was serving the slots itself, or by every other holder's (each asked, and complete or
// unreachable without ever having broken off), or when this node has waited long enough alone.

#include <algorithm>
#include <cstddef>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "dhtkit/cluster/catch_up.hpp"
#include "dhtkit/cluster/cluster_map.hpp"
#include "dhtkit/cluster/slots.hpp"

namespace dhtkit {

struct catch_up_plan {
    // A group of slots to catch up, and the holders to ask for it.
    struct group {
        slot_range range;
        std::vector<node_id> others;
        bool ready = false;
    };
    struct source {
        node at;
        std::vector<slot_range> ranges;
        sync_outcome last;
        bool tried = false;
        bool broke_off = false;  // a stream from it was ever cut short
    };
    std::vector<group> groups;
    std::vector<source> sources;

    void ask(const slot_range& r, const node& n) {
        auto s = std::find_if(sources.begin(), sources.end(), [&](const source& x) { return x.at.id == n.id; });
        if (s == sources.end()) s = sources.insert(sources.end(), source{n, {}, {}, false, false});
        s->ranges.push_back(r);
    }

    // The source of holder `id`, which some group asks.
    [[nodiscard]] const source& of(node_id id) const {
        return *std::find_if(sources.begin(), sources.end(), [&](const source& x) { return x.at.id == id; });
    }

    // The groups of `map` that hold `self` (and `with`, when given), each to be asked of its other
    // holders (`with` too when `ask_with`). A group with nobody to ask is ready at once.
    [[nodiscard]] static catch_up_plan from_map(const cluster_map& map, node_id self, std::optional<node_id> with,
                                                bool ask_with) {
        catch_up_plan p;
        map.slots().for_each_range([&](slot_range r, std::span<const node_id> holders) {
            if (std::find(holders.begin(), holders.end(), self) == holders.end()) return;
            if (with && std::find(holders.begin(), holders.end(), *with) == holders.end()) return;
            group g{r, {}, false};
            for (auto id : holders) {
                const node* n = id == self || (with && id == *with && !ask_with) ? nullptr : map.find(id);
                if (!n) continue;
                g.others.push_back(id);
                p.ask(r, *n);
            }
            g.ready = g.others.empty();
            p.groups.push_back(std::move(g));
        });
        return p;
    }

    // The slots `self` holds, each asked of `back` alone (a peer back from an absence, for
    // anti-entropy with it). Nothing when `back` is not in the map.
    [[nodiscard]] static catch_up_plan with_one(const cluster_map& map, node_id self, node_id back) {
        catch_up_plan p;
        const node* from = map.find(back);
        if (!from) return p;
        map.slots().for_each_range([&](slot_range r, std::span<const node_id> holders) {
            if (std::find(holders.begin(), holders.end(), self) == holders.end()) return;
            p.groups.push_back(group{r, {back}, false});
            p.ask(r, *from);
        });
        return p;
    }

    // Slots gained in a new map, each range asked of the nodes given with it (those that are not
    // `self`).
    [[nodiscard]] static catch_up_plan from_gained(node_id self,
                                                   const std::vector<std::pair<slot_range, std::vector<node>>>& gained) {
        catch_up_plan p;
        for (const auto& [range, from] : gained) {
            group g{range, {}, false};
            for (const auto& n : from) {
                if (n.id == self) continue;
                g.others.push_back(n.id);
                p.ask(range, n);
            }
            g.ready = g.others.empty();
            p.groups.push_back(std::move(g));
        }
        return p;
    }

    // How many slots the groups hold.
    [[nodiscard]] std::size_t slots() const {
        std::size_t n = 0;
        for (const auto& g : groups) n += g.range.last - g.range.first + 1u;
        return n;
    }

    // Marks ready each group caught up by now (`alone`: every one), calling serve(range) for each
    // that became so. True when all are.
    template <class Serve>
    bool settle(bool alone, Serve&& serve) {
        bool all = true;
        for (auto& g : groups) {
            if (g.ready) continue;
            const auto h = heard(g);
            g.ready = h.from_serving || h.all_heard || alone;
            if (g.ready) serve(g.range);
            all = all && g.ready;
        }
        return all;
    }

    // How many slots have neither a complete stream from a serving holder nor complete streams
    // from every other holder: those this node may serve without writes that another holder has.
    [[nodiscard]] std::size_t unsure_slots() const {
        std::size_t unsure = 0;
        for (const auto& g : groups) {
            const auto h = heard(g);
            if (!h.from_serving && !h.all_complete) unsure += g.range.last - g.range.first + 1u;
        }
        return unsure;
    }

    [[nodiscard]] std::size_t complete_sources() const {
        return static_cast<std::size_t>(
            std::count_if(sources.begin(), sources.end(), [](const source& s) { return s.last.complete(); }));
    }

private:
    // What a group's other holders' last streams say.
    struct hearing {
        bool from_serving = false;  // one was complete, from a holder serving the slots itself
        bool all_complete = true;   // each was complete
        bool all_heard = true;      // each was asked, and was complete or unreachable without ever breaking off
    };
    [[nodiscard]] hearing heard(const group& g) const {
        hearing h;
        for (auto id : g.others) {
            const auto& src = of(id);
            h.from_serving = h.from_serving || (src.last.complete() && src.last.from_serving);
            h.all_complete = h.all_complete && src.last.complete();
            // A holder not asked yet is not heard: its outcome reads "unreachable" until then.
            h.all_heard = h.all_heard && src.tried &&
                          (src.last.complete() || (src.last.how == sync_outcome::ended::unreachable && !src.broke_off));
        }
        return h;
    }
};

}  // namespace dhtkit
