# nabla build.  `make` builds libnabla.a, libnabla.so and ./nabla;
# `make demo` runs the paper's derivations; `make test` runs the test suite
# (`make test V=1`: one line per test file and each file's own report).
#
# Configuration (each change rebuilds everything: $(O)/config records it):
#   CC=clang          the compiler
#   BLAS=0 / BLAS=1   portable kernels / require OpenBLAS (default: OpenBLAS when found)
#   ZLIB=0 / ZLIB=1   without / with zlib (default: zlib when found)
#   MVEC=0 / MVEC=1   without / with glibc's vector math (default: when found)
#   SAN=1             AddressSanitizer + UndefinedBehaviorSanitizer
#   OPT=-O2           optimisation flags of everything but the kernels
#   KERNEL_ARCH=      kernels for the x86-64 baseline (default -march=native)
#   CFLAGS, CPPFLAGS, LDFLAGS   appended to nabla's own flags
#   O=build           the build folder (the default build puts the command at
#                     ./nabla, any other O at $(O)/nabla)
# Installation (README.md, "Installing and linking"):
#   make install PREFIX=/usr/local DESTDIR=   (also BINDIR LIBDIR INCLUDEDIR MANDIR PKGCONFIGDIR)
#   make uninstall PREFIX=... DESTDIR=...
#   make installcheck PREFIX=...   builds and runs examples/*.c against the installed copy
CC ?= cc
O ?= build
OPT ?= -O2

# The one version number: NABLA_VERSION in include/nabla.h ("0.1.0" -> libnabla.so.0.1.0, soname libnabla.so.0).
VERSION := $(shell sed -n 's/^\#define NABLA_VERSION "\([0-9.]*\)".*/\1/p' include/nabla.h)
SOVERSION := $(firstword $(subst ., ,$(VERSION)))
$(if $(VERSION),,$(error no '#define NABLA_VERSION "X.Y.Z"' in include/nabla.h))

# Optional libraries, detected once per make run: header and library present -> used.
# detect(header, function call, library): 1 when a program calling it compiles and links.
detect = $(shell printf '\043include <%s>\nint main(void){return %s != 0;}\n' '$(1)' '$(2)' | \
                 $(CC) -x c - $(3) -o /dev/null 2>/dev/null && echo 1 || echo 0)
ifeq ($(origin BLAS),undefined)
  BLAS := $(call detect,cblas.h,cblas_sdot(0, 0, 1, 0, 1),-lopenblas)
endif
ifeq ($(BLAS),1)
  FEATURE_CPPFLAGS += -DNB_HAVE_CBLAS
  FEATURE_LIBS += -lopenblas
endif
ifeq ($(origin ZLIB),undefined)
  ZLIB := $(call detect,zlib.h,zlibVersion()[0],-lz)
endif
ifeq ($(ZLIB),1)
  FEATURE_CPPFLAGS += -DNB_HAVE_ZLIB
  FEATURE_LIBS += -lz
endif

# glibc's vector math library (libmvec, reached through -lm): the transcendental
# element-wise kernels run a vector at a time (src/kernels_impl.h).
ifeq ($(origin MVEC),undefined)
  MVEC := $(shell printf 'typedef double v __attribute__((vector_size(16)));\nv _ZGVbN2v_tanh(v);\nv _ZGVbN2vv_pow(v, v);\nint main(void){v x = {0, 0}; return (int)(_ZGVbN2v_tanh(x)[0] + _ZGVbN2vv_pow(x, x)[1]);}\n' | \
                 $(CC) -x c - -lm -o /dev/null 2>/dev/null && echo 1 || echo 0)
endif
ifeq ($(MVEC),1)
  FEATURE_CPPFLAGS += -DNB_HAVE_LIBMVEC
endif

ifeq ($(SAN),1)
  OPT = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
  LDSAN = -fsanitize=address,undefined
endif
# Numeric kernels (src/kernels*.c, src/gemm_avx512.c): -O3 so that the compiler vectorises the
# element-wise loops, for this machine's vector unit.
ifeq ($(origin KERNEL_ARCH),undefined)
  KERNEL_ARCH := $(shell $(CC) -march=native -x c -c /dev/null -o /dev/null 2>/dev/null && echo -march=native)
endif
KERNEL_FLAGS = -O3 -fno-math-errno -ffp-contract=fast $(KERNEL_ARCH)

NB_CFLAGS = -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -Iinclude -Isrc -fPIC -MMD -MP \
            $(OPT) $(FEATURE_CPPFLAGS) $(CPPFLAGS) $(CFLAGS)
NB_LDFLAGS = $(LDSAN) $(LDFLAGS)
LDLIBS = $(FEATURE_LIBS) -lm -lpthread -ldl

HEADERS = $(wildcard include/*.h)
SRCS = $(wildcard src/*.c)
OBJS = $(SRCS:src/%.c=$(O)/src/%.o)
TOOL_OBJS = $(patsubst tools/%.c,$(O)/tools/%.o,$(wildcard tools/*.c))
TEST_BINS = $(patsubst tests/%.c,$(O)/tests/%,$(wildcard tests/test_*.c))
EXAMPLE_BINS = $(patsubst examples/%.c,$(O)/examples/%,$(wildcard examples/*.c))
BIN = $(if $(filter build,$(O)),nabla,$(O)/nabla)
SHLIB = libnabla.so.$(VERSION)
SONAME = libnabla.so.$(SOVERSION)

all: $(O)/libnabla.a $(O)/libnabla.so $(O)/$(SONAME) $(BIN)

# Everything built depends on $(O)/config, which is rewritten only when the
# configuration changes: `make BLAS=0` after `make` rebuilds, a repeated `make` does not.
CONFIG = $(CC) $(NB_CFLAGS) | $(KERNEL_FLAGS) | $(NB_LDFLAGS) $(LDLIBS)
$(O)/config: FORCE
	@mkdir -p $(@D)
	@printf '%s\n' '$(CONFIG)' | cmp -s - $@ || printf '%s\n' '$(CONFIG)' >$@

$(O)/src/%.o: src/%.c $(O)/config
	@mkdir -p $(@D)
	$(CC) $(NB_CFLAGS) $(if $(filter kernels% gemm_avx512,$*),$(KERNEL_FLAGS)) -c $< -o $@

# Generated code (src/native.c) carries src/scalar.h's definitions as text.
$(O)/src/scalar_text.inc: src/scalar.h
	@mkdir -p $(@D)
	sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/"/' -e 's/$$/\\n"/' $< >$@
$(O)/src/native.o: $(O)/src/scalar_text.inc
$(O)/src/native.o: NB_CFLAGS += -I$(O)/src

$(O)/libnabla.a: $(OBJS)
	rm -f $@ && ar rcs $@ $^

# The shared library exports the functions the public headers (include/*.h) declare
# and nothing else (a linker version script listing every nb_name( of the headers).
$(O)/libnabla.map: $(HEADERS)
	@mkdir -p $(@D)
	{ echo '{ global:'; cat $^ | grep -oE '\bnb_[a-z0-9_]+ *\(' | tr -d ' (' | sort -u | sed 's/$$/;/'; \
	  echo 'local: *; };'; } >$@
$(O)/$(SHLIB): $(OBJS) $(O)/libnabla.map
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=$(O)/libnabla.map $(NB_LDFLAGS) -o $@ $(OBJS) $(LDLIBS)
$(O)/$(SONAME) $(O)/libnabla.so: $(O)/$(SHLIB)
	ln -sf $(SHLIB) $@

$(O)/tools/%.o: tools/%.c $(O)/config
	@mkdir -p $(@D)
	$(CC) $(NB_CFLAGS) -Itools -c $< -o $@
$(BIN): $(TOOL_OBJS) $(O)/libnabla.a
	$(CC) $(NB_LDFLAGS) -o $@ $^ $(LDLIBS)

# Test and example programs: one source file each, linked with the static library.
LINK_PROGRAM = $(CC) $(NB_CFLAGS) $(NB_LDFLAGS) -o $@ $< $(O)/libnabla.a $(LDLIBS)
$(O)/tests/%: tests/%.c $(O)/config $(O)/libnabla.a
	@mkdir -p $(@D)
	$(LINK_PROGRAM)
$(O)/examples/%: examples/%.c $(O)/config $(O)/libnabla.a
	@mkdir -p $(@D)
	$(LINK_PROGRAM)

-include $(wildcard $(O)/src/*.d $(O)/tools/*.d $(O)/tests/*.d $(O)/examples/*.d)

demo: all
	NABLA=./$(BIN) ./examples/paper_demo.sh

test: all $(TEST_BINS)
	NABLA=./$(BIN) TEST_BIN_DIR=$(O)/tests TEST_VERBOSE=$(V) ./tests/run.sh

examples: $(EXAMPLE_BINS)

# ---- installation (docs: README.md "Installing and linking") ----
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
MANDIR ?= $(PREFIX)/share/man
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
INSTALL ?= install
# nabla.pc: paths under PREFIX written relative to ${prefix}; BLAS and zlib are private
# (only static linking needs them).
pc_path = $(patsubst $(PREFIX)/%,$${prefix}/%,$(1))
PC_SUBST = -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(call pc_path,$(LIBDIR))|' \
           -e 's|@INCLUDEDIR@|$(call pc_path,$(INCLUDEDIR))|' -e 's|@VERSION@|$(VERSION)|' \
           -e 's|@LIBS_PRIVATE@|$(LDLIBS)|'
INSTALLED = $(BINDIR)/nabla $(HEADERS:include/%=$(INCLUDEDIR)/%) $(LIBDIR)/libnabla.a $(LIBDIR)/$(SHLIB) \
            $(LIBDIR)/$(SONAME) $(LIBDIR)/libnabla.so $(MANDIR)/man1/nabla.1 $(PKGCONFIGDIR)/nabla.pc

install: all
	$(INSTALL) -d $(addprefix $(DESTDIR),$(BINDIR) $(INCLUDEDIR) $(LIBDIR) $(MANDIR)/man1 $(PKGCONFIGDIR))
	$(INSTALL) -m 755 $(BIN) $(DESTDIR)$(BINDIR)/nabla
	$(INSTALL) -m 644 $(HEADERS) $(DESTDIR)$(INCLUDEDIR)/
	$(INSTALL) -m 644 $(O)/libnabla.a $(DESTDIR)$(LIBDIR)/libnabla.a
	$(INSTALL) -m 755 $(O)/$(SHLIB) $(DESTDIR)$(LIBDIR)/$(SHLIB)
	ln -sf $(SHLIB) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libnabla.so
	sed -e 's|@VERSION@|$(VERSION)|' docs/nabla.1 >$(DESTDIR)$(MANDIR)/man1/nabla.1
	sed $(PC_SUBST) nabla.pc.in >$(DESTDIR)$(PKGCONFIGDIR)/nabla.pc

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))

# After `make install` with the same PREFIX/DESTDIR: builds and runs examples/*.c
# against the installed copy through pkg-config, shared and static.
installcheck:
	CC='$(CC)' DESTDIR='$(DESTDIR)' tests/installcheck.sh '$(VERSION)' '$(BINDIR)' '$(PKGCONFIGDIR)' '$(MANDIR)'

clean:
	rm -rf build build-* nabla

FORCE:
.PHONY: all demo test examples install uninstall installcheck clean FORCE
