// Uses the installed headers the way a user's project would.
#include <dhtkit/dhtkit.hpp>

#include <cstdio>
#include <string>

int main() {
    dhtkit::locked_table<std::string, std::string> table;
    table.put("key", "value");
    dhtkit::thread_pool pool(2);
    auto found = pool.submit([&] { return table.try_get("key"); }).get();
    if (!found || *found != "value") return 1;
    std::printf("consumer: %s -> %s, stable_hash(\"\")=%016llx\n", "key", found->c_str(),
                static_cast<unsigned long long>(dhtkit::stable_hash("")));
    return 0;
}
