# Thin wrapper over CMake: `make run` and `make test` are the README's two commands.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps configure build run test bench sweep compare clean

all: build

deps:
	@bash scripts/install_deps.sh

configure: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) > $(BUILD).configure.log 2>&1 || (cat $(BUILD).configure.log; exit 1)

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

# Only the program: the tests and fuzz replays are built by `make test`.
run: configure
	@cmake --build $(BUILD) -j $(JOBS) --target chorus
	@bash scripts/run_default.sh $(BUILD)

# CTest, then every parser fuzzed for FUZZ_SECONDS each (clang + AddressSanitizer, docs/reliability.md).
FUZZ_SECONDS ?= 20
test: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 600
	@bash tests/fuzz/run_fuzzers.sh $(FUZZ_SECONDS) $(BUILD)-fuzz

bench: build
	@bash bench/run_benchmarks.sh $(BUILD)

sweep: build
	@bash scripts/install_deps.sh python3-matplotlib
	@bench/sweep --build $(BUILD) --out $(BUILD)/sweep

# Chorus against ONNX Runtime and PyTorch on the same .onnx files (docs/performance.md).
compare: build
	@bash scripts/install_deps.sh python3-matplotlib
	@command -v npm >/dev/null || bash scripts/install_deps.sh nodejs npm
	@bench/compare --build $(BUILD) --out $(BUILD)/compare

clean:
	rm -rf $(BUILD) $(BUILD).configure.log $(BUILD)-fuzz $(BUILD)-fuzz.*.log
