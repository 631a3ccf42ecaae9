# nabla build.  `make` builds libnabla.a, libnabla.so and ./nabla;
# `make demo` runs the paper's derivations; `make test` runs the test suite.
# Options: CC=clang, BLAS=0 (portable kernels) / BLAS=1 (require OpenBLAS),
# SAN=1 (AddressSanitizer + UndefinedBehaviorSanitizer), O=build dir (the
# default build puts the command at ./nabla, any other O at $(O)/nabla).
CC ?= cc
O ?= build
CFLAGS_BASE = -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -Iinclude -Isrc -fPIC
OPT ?= -O2
ifeq ($(SAN),1)
  OPT = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
  LDSAN = -fsanitize=address,undefined
endif
# OpenBLAS auto-detection: cblas.h and libopenblas present -> use it.
BLAS ?= $(shell printf '\043include <cblas.h>\nint main(void){return 0;}\n' | $(CC) -x c - -lopenblas -o /dev/null 2>/dev/null && echo 1 || echo 0)
ifeq ($(BLAS),1)
  BLAS_CFLAGS = -DNB_HAVE_CBLAS
  BLAS_LIBS = -lopenblas
endif
# zlib auto-detection (gzipped IDX data for `nabla train`): zlib.h and libz present -> use it.
ZLIB ?= $(shell printf '\043include <zlib.h>\nint main(void){return 0;}\n' | $(CC) -x c - -lz -o /dev/null 2>/dev/null && echo 1 || echo 0)
ifeq ($(ZLIB),1)
  ZLIB_CFLAGS = -DNB_HAVE_ZLIB
  ZLIB_LIBS = -lz
endif
CFLAGS += $(CFLAGS_BASE) $(OPT) $(BLAS_CFLAGS) $(ZLIB_CFLAGS)
LDLIBS = $(BLAS_LIBS) $(ZLIB_LIBS) -lm -lpthread

SRCS = $(wildcard src/*.c)
OBJS = $(SRCS:src/%.c=$(O)/src/%.o)
TEST_SRCS = $(wildcard tests/*.c)
TEST_BINS = $(TEST_SRCS:tests/%.c=$(O)/tests/%)
BIN = $(if $(filter build,$(O)),nabla,$(O)/nabla)

all: $(O)/libnabla.a $(O)/libnabla.so $(BIN)

$(O)/src/%.o: src/%.c src/*.h src/ops.def include/*.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@
# Numeric kernels (src/kernels_impl.h): -O3 so that gcc vectorises the element-wise loops,
# for this machine's vector unit (KERNEL_ARCH= builds portable baseline kernels).
KERNEL_ARCH ?= $(shell $(CC) -march=native -x c -c /dev/null -o /dev/null 2>/dev/null && echo -march=native)
$(O)/src/kernels.o: CFLAGS += -O3 -fno-math-errno -ffp-contract=fast $(KERNEL_ARCH)

$(O)/libnabla.a: $(OBJS)
	rm -f $@ && ar rcs $@ $^

$(O)/libnabla.so: $(OBJS)
	$(CC) -shared $(LDSAN) -o $@ $^ $(LDLIBS)

$(BIN): $(wildcard tools/*.c) tools/*.h include/*.h $(O)/libnabla.a
	$(CC) $(CFLAGS) -Itools $(LDSAN) -o $@ $(wildcard tools/*.c) $(O)/libnabla.a $(LDLIBS)

$(O)/tests/%: tests/%.c tests/*.h $(O)/libnabla.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDSAN) -o $@ $< $(O)/libnabla.a $(LDLIBS)

demo: $(BIN)
	NABLA=./$(BIN) ./examples/paper_demo.sh

test: all $(TEST_BINS)
	NABLA=./$(BIN) TEST_BIN_DIR=$(O)/tests ./tests/run.sh

clean:
	rm -rf build build-* nabla

.PHONY: all demo test clean

# Example programs of the C API (examples/*.c), e.g. build/examples/neuron.
EXAMPLE_BINS = $(patsubst examples/%.c,$(O)/examples/%,$(wildcard examples/*.c))
examples: $(EXAMPLE_BINS)
$(O)/examples/%: examples/%.c $(O)/libnabla.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDSAN) -o $@ $< $(O)/libnabla.a $(LDLIBS)
.PHONY: examples
