# Flags for dhtkit's own targets (tests, benchmarks, examples); consumers of the headers get none.
set(CMAKE_CXX_EXTENSIONS OFF)
set(DHTKIT_WARNINGS -Wall -Wextra -Wpedantic -Werror)

if(DHTKIT_SANITIZE)
  # -g1: line tables only, enough for the sanitizers' reports to name file and line; full debug
  # information took a third of the sanitizer builds' compile time.
  add_compile_options(-fsanitize=${DHTKIT_SANITIZE} -fno-omit-frame-pointer -g1)
  add_link_options(-fsanitize=${DHTKIT_SANITIZE})
  if(DHTKIT_SANITIZE MATCHES "undefined")
    add_compile_options(-fno-sanitize-recover=undefined)
  endif()
  if(DHTKIT_SANITIZE MATCHES "thread" AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    add_compile_options(-Wno-tsan)
  endif()
endif()

# Our own programs take XXH3's runtime-dispatched code (AVX2/AVX-512) from Debian's libxxhash for
# file checksums (store/checksum.hpp); the headers alone use the inline SSE2 code.
find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(libxxhash QUIET IMPORTED_TARGET libxxhash)
endif()

function(dhtkit_target name)
  target_compile_options(${name} PRIVATE ${DHTKIT_WARNINGS})
  target_link_libraries(${name} PRIVATE ${ARGN})
  if(TARGET PkgConfig::libxxhash)
    target_link_libraries(${name} PRIVATE PkgConfig::libxxhash)
    target_compile_definitions(${name} PRIVATE DHTKIT_XXH3_DISPATCH)
  endif()
endfunction()
