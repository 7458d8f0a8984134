# Quick start: `make demo` runs the embedded default, `make test` runs every test.
# Each installs what is missing (scripts/install-deps.sh: Debian packages, and the project's Python
# environment with PyTorch, whose LibTorch lofi builds on) and builds in Release.
# TORCH_DIR=/path/to/share/cmake/Torch builds against another LibTorch instead.
BUILD ?= build
JOBS ?= $(shell nproc)
PYTHON_ENV := $(shell bash scripts/python-env.sh)
TORCH_DIR ?=
CMAKE_TORCH := $(if $(TORCH_DIR),-DTorch_DIR=$(TORCH_DIR),-DLOFI_PYTHON=$(PYTHON_ENV)/bin/python)

.PHONY: all deps build demo test test-unit bench fuzz mutants clean

all: build

deps:
	@bash scripts/install-deps.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_TORCH) -DLOFI_TEST_PYTHON=$(PYTHON_ENV)/bin/python

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

# The references it compares against (PyTorch eager, torchvision, PIL) are in the project environment.
bench: build
	bash bench/run.sh $(BUILD)

# Semantic mutants (tests/mutants.txt) against the tests that should catch them; not in CI.
mutants: deps
	bash scripts/mutants.sh

clean:
	rm -rf $(BUILD)
