# Quick start: `make demo` runs the embedded default, `make test` runs every test.
# Each installs missing Debian packages (scripts/install-deps.sh) and builds in Release.
BUILD ?= build
JOBS ?= $(shell nproc)

.PHONY: all deps build demo test test-unit bench fuzz clean

all: build

deps:
	@bash scripts/install-deps.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

demo: build
	$(BUILD)/lofi demo

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-unit: build
	cd $(BUILD) && ctest --output-on-failure -L unit -j $(JOBS)

# libFuzzer on the safetensors header parser under ASan/UBSan (FUZZ_SECONDS, default 60);
# `make test` runs it for 10 s.
FUZZ_SECONDS ?= 60
fuzz: build
	cmake --build $(BUILD) --target lofi_fuzz
	bash fuzz/run.sh $(BUILD)/fuzz/safetensors_header_fuzz $(FUZZ_SECONDS)

bench: build
	@bash scripts/install-deps.sh --bench
	bash bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD)
