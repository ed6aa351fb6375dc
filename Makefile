# biomedclip-c: one build for everything.
#   make          build every program into bin/
#   make test     build and run all tests (ends with "N passed, N failed")
#   make test-asan  the same tests under AddressSanitizer + UBSan
#   make demo     a small pipeline end to end on generated data
#   make deps     install the Debian packages the build and the tests need
#   make bench    benchmarks (numbers, not pass/fail)
# BUILD and BIN move the objects and programs (the sanitizer build uses them).

BUILD ?= build
BIN ?= bin
CC ?= gcc
PY ?= /usr/bin/python3

PKGS := msgpack libarchive vips openblas libutf8proc jansson
OPT ?= -O2 -march=x86-64-v2 -g
SAN ?=
CFLAGS_ALL = -std=gnu11 $(OPT) $(SAN) -Wall -Wextra -fopenmp -MMD -MP -Icommon \
             $(shell pkg-config --cflags $(PKGS) 2>/dev/null) $(CFLAGS)
LDLIBS_ALL = $(SAN) -fopenmp $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -lpthread $(LDLIBS)

COMMON_SRC := $(wildcard common/*.c)
COMMON_OBJ := $(COMMON_SRC:%.c=$(BUILD)/%.o)
FILTER_SRC := $(wildcard filters/*.c)
PROGRAMS   := $(FILTER_SRC:filters/%.c=$(BIN)/%)
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BIN   := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
LIBBM      := $(BUILD)/libbm.a

.PHONY: all deps deps-check test test-asan demo bench clean fixtures fuzz fixtures-model parity-full
all: $(PROGRAMS) $(UNIT_BIN)

$(BUILD)/%.o: %.c | deps-check
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(LIBBM): $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BIN)/%: $(BUILD)/filters/%.o $(LIBBM)
	@mkdir -p $(dir $@)
	$(CC) $< $(LIBBM) -o $@ $(LDLIBS_ALL)

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(LIBBM)
	@mkdir -p $(dir $@)
	$(CC) $< $(LIBBM) -o $@ $(LDLIBS_ALL)

# Installs nothing when everything is there; on a fresh machine, as root,
# installs the Debian packages (make deps), otherwise says what is missing.
deps-check:
	@sh tests/deps.sh check || { [ "$$(id -u)" = 0 ] && sh tests/deps.sh install; } || \
	  { echo "missing build dependencies: run 'sudo make deps'" >&2; exit 1; }

deps:
	sh tests/deps.sh install

test: all
	@BM_BIN=$(abspath $(BIN)) BM_BUILD=$(abspath $(BUILD)) PY=$(PY) sh tests/run.sh

test-asan:
	$(MAKE) BUILD=build/asan BIN=build/asan/bin OPT="-O1 -g -fno-omit-frame-pointer" \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined" test

demo: all
	@BM_BIN=$(abspath $(BIN)) PY=$(PY) sh examples/demo.sh

bench: all
	@BM_BIN=$(abspath $(BIN)) PY=$(PY) sh tests/bench/run.sh

# The tiny model and open_clip's outputs the tests compare with, and the same
# at full size (needs the python with torch, timm, transformers, open_clip).
TORCH_PY ?= python3
# Regenerate the committed reference fixtures (needs TORCH_PY: a python with
# torch, timm, transformers, open_clip, tokenizers, safetensors). Commit only
# what really changed: some files embed torch's random zip magic.
fixtures: fixtures-model
	$(TORCH_PY) tests/ref/make_optim_fixture.py tests/fixtures/optim.bmr
	$(TORCH_PY) tests/ref/make_clip_loss_fixture.py tests/fixtures/clip_loss.bmr
	$(TORCH_PY) tests/ref/make_backward_fixture.py tests/fixtures/backward.bmr
	$(TORCH_PY) tests/ref/make_fusion_fixture.py tests/fixtures/fusion.bmr
	$(TORCH_PY) tests/ref/make_linear_fixture.py tests/fixtures/linear
	$(TORCH_PY) tests/ref/make_finetune_fixture.py tests/fixtures/finetune.bmr
	$(TORCH_PY) tests/ref/make_bert_train_fixture.py tests/fixtures/bert_train.bmr
	$(TORCH_PY) tests/ref/make_loader_fixtures.py
	$(TORCH_PY) tests/ref/make_tokenizer_fixture.py

fixtures-model:
	$(TORCH_PY) tests/ref/make_tiny_model.py tiny tests/fixtures/tiny-model tests/fixtures/tiny-embed

parity-full: all
	@BM_BIN=$(abspath $(BIN)) BM_BUILD=$(abspath $(BUILD)) PY=$(PY) TORCH_PY=$(TORCH_PY) sh tests/ref/parity_full.sh

# libFuzzer targets tests/fuzz/fuzz_*.c (clang), each run FUZZ_SECONDS on its
# corpus; new inputs land in $(BUILD)/fuzz/work_NAME, crashes in $(BUILD)/fuzz/.
FUZZ_SECONDS ?= 60
FUZZ_CC ?= clang
FUZZ_TARGETS := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_LIBSRC := common/weights.c common/torchzip.c common/unpickle.c common/safetensors.c \
               common/tokenizer.c common/tokenizer_chars.c common/tokenizer_json.c
$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_LIBSRC) $(wildcard common/*.h) | deps-check
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -std=gnu11 -g -O1 -DBM_FUZZING -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	  -Icommon $(shell pkg-config --cflags libarchive jansson libutf8proc) $< $(FUZZ_LIBSRC) -o $@ \
	  $(shell pkg-config --libs libarchive jansson libutf8proc)

fuzz: $(FUZZ_TARGETS:%=$(BUILD)/fuzz/fuzz_%)
	@for t in $(FUZZ_TARGETS); do \
	  dict=; [ -f tests/fuzz/$$t.dict ] && dict=-dict=tests/fuzz/$$t.dict; \
	  mkdir -p $(BUILD)/fuzz/work_$$t && \
	  $(BUILD)/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 $$dict \
	    -artifact_prefix=$(BUILD)/fuzz/crash_$$t- $(BUILD)/fuzz/work_$$t tests/fuzz/corpus_$$t || exit 1; \
	done

clean:
	rm -rf $(BUILD) $(BIN)

-include $(COMMON_OBJ:.o=.d) $(FILTER_SRC:%.c=$(BUILD)/%.d) $(UNIT_SRC:%.c=$(BUILD)/%.d)
.SECONDARY:
