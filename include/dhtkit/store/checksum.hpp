#pragma once
// File checksums: XXH3-64 of the content, fed in blocks. The bits are the same whichever code
// computes them. Where DHTKIT_XXH3_DISPATCH is defined (the example programs and benchmarks do,
// and link Debian's libxxhash), updates go through that library's runtime dispatch, which uses
// AVX2 or AVX-512 when the CPU has them: about 2.5x the inline SSE2 code on this machine, which is
// most of what a checksum costs an obtain. Without it, the inline code: headers only.

#include <cstddef>
#include <cstdint>

#include "dhtkit/store/stable_hash.hpp"  // brings in xxHash, inline

#ifdef DHTKIT_XXH3_DISPATCH
extern "C" XXH_errorcode XXH3_64bits_update_dispatch(XXH3_state_t* state, const void* input, std::size_t len);
#endif

namespace dhtkit {

class checksum_stream {
public:
    checksum_stream() noexcept { XXH3_64bits_reset(&state_); }

    void update(const void* data, std::size_t n) noexcept {
#ifdef DHTKIT_XXH3_DISPATCH
        XXH3_64bits_update_dispatch(&state_, data, n);
#else
        XXH3_64bits_update(&state_, data, n);
#endif
    }

    [[nodiscard]] std::uint64_t digest() const noexcept { return XXH3_64bits_digest(&state_); }

private:
    XXH3_state_t state_;
};

}  // namespace dhtkit
