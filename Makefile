# A thin front for Meson.  `make demo` and `make check` install missing
# Debian packages first (when run as root), then build.

BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
MESON ?= meson

.PHONY: all deps build demo check check-fast check-asan fuzz bench clean

all: build

deps:
	@scripts/install-deps.sh

$(BUILD)/build.ninja:
	$(MESON) setup $(BUILD) --buildtype=release

$(ASAN_BUILD)/build.ninja:
	$(MESON) setup $(ASAN_BUILD) --buildtype=debugoptimized \
		-Db_sanitize=address,undefined -Db_lundef=false

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

# A live migration of the built-in guest (1 GiB, vCPUs writing) between
# two processes on loopback, verified; then the codec benchmark's quick run.
demo: build
	$(BUILD)/cli/zmigrate demo
	$(BUILD)/bench/zmigrate-bench codecs --quick

# The whole suite, in a release build and under ASan + UBSan.
check: deps $(BUILD)/build.ninja $(ASAN_BUILD)/build.ninja
	ninja -C $(BUILD)
	ninja -C $(ASAN_BUILD)
	-$(MESON) test -C $(BUILD) --print-errorlogs --num-processes 2
	-ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		$(MESON) test -C $(ASAN_BUILD) --print-errorlogs --num-processes 2 \
		--timeout-multiplier 3
	@scripts/test-summary.sh $(BUILD)/meson-logs/testlog.json \
		$(ASAN_BUILD)/meson-logs/testlog.json

check-fast: build
	$(MESON) test -C $(BUILD) --print-errorlogs

# libFuzzer builds of the decoders (clang).
fuzz:
	@scripts/install-deps.sh fuzz
	CC=clang $(MESON) setup $(FUZZ_BUILD) --buildtype=debugoptimized \
		-Db_sanitize=address,undefined -Db_lundef=false -Dfuzzers=enabled
	ninja -C $(FUZZ_BUILD)

# The codec benchmark, then one migration per method (table + PNG chart).
bench: build
	@scripts/install-deps.sh bench
	$(BUILD)/bench/zmigrate-bench codecs
	$(BUILD)/cli/zmigrate bench --chart $(BUILD)/migration-bench.png

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
