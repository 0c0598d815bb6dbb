# The two commands of the README, and the sanitizer runs CI adds to them.
#   make demo   installs what is missing, builds, and runs the main job
#   make test   installs what is missing, builds, and runs every test
JOBS ?= 2
CMAKE_FLAGS ?=
TSAN_RUN := setarch $(shell uname -m) -R

.PHONY: deps build demo test test-asan test-tsan fuzz clean

deps:
	@bash cmake/install-deps.sh

build: deps
	cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)
	cmake --build build -j $(JOBS)

demo: build
	bash examples/demo.sh build/examples

test: build
	cd build && ctest -j $(JOBS) --output-on-failure --timeout 300

# Tests and the programs they run (no benchmarks), built with the sanitizers.
# -O1, as AddressSanitizer's documentation suggests: with UBSan's checks, -O2 doubled the compile time.
test-asan: deps
	cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDHTKIT_SANITIZE=address,undefined \
	  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
	  -DDHTKIT_BUILD_BENCHMARKS=OFF -DDHTKIT_BUILD_EXAMPLES=ON
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest -j $(JOBS) --output-on-failure --timeout 600

# TSan's runtime cannot start under a 32-bit mmap randomisation; setarch -R turns it off.
test-tsan: deps
	cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDHTKIT_SANITIZE=thread \
	  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" \
	  -DDHTKIT_BUILD_BENCHMARKS=OFF -DDHTKIT_BUILD_EXAMPLES=ON
	$(TSAN_RUN) cmake --build build-tsan -j $(JOBS)
	cd build-tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 $(TSAN_RUN) \
	  ctest -j $(JOBS) --output-on-failure --timeout 900

# The frame decoder and request handlers under libFuzzer (clang), for FUZZ_SECONDS; fails on any finding.
FUZZ_SECONDS ?= 60
fuzz: deps
	cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
	  -DDHTKIT_BUILD_TESTS=OFF -DDHTKIT_BUILD_BENCHMARKS=OFF -DDHTKIT_BUILD_EXAMPLES=OFF -DDHTKIT_BUILD_FUZZERS=ON
	cmake --build build-fuzz -j $(JOBS)
	rm -rf build-fuzz/corpus && mkdir -p build-fuzz/corpus && cp tests/fuzz/seeds/* build-fuzz/corpus/
	build-fuzz/tests/fuzz/frame_fuzz -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -print_final_stats=1 \
	  -artifact_prefix=build-fuzz/ build-fuzz/corpus
	rm -rf build-fuzz/text-corpus && mkdir -p build-fuzz/text-corpus
	build-fuzz/tests/fuzz/text_fuzz -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -print_final_stats=1 \
	  -artifact_prefix=build-fuzz/ build-fuzz/text-corpus

clean:
	rm -rf build build-asan build-tsan build-fuzz
