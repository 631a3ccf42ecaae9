#!/usr/bin/env bash
# Checks an installed nabla (`make install` then `make installcheck`, same
# PREFIX and DESTDIR): pkg-config finds it at the right version; every
# examples/*.c program builds through pkg-config against the installed copy,
# linked with the shared library (and the run loads the installed one) and
# fully static (pkg-config --static), and runs; the shared library exports
# exactly the functions the headers declare; the installed command and man
# page work.
#
# usage: tests/installcheck.sh VERSION BINDIR PKGCONFIGDIR MANDIR
#        (environment: CC, DESTDIR)
set -euo pipefail
cd "$(dirname "$0")/.."
version=$1 bindir=${DESTDIR:-}$2 pcdir=${DESTDIR:-}$3 mandir=${DESTDIR:-}$4
CC=${CC:-cc}
export PKG_CONFIG_PATH=$pcdir
# With DESTDIR, the .pc file names the final paths: pkg-config prefixes its -I/-L with the sysroot.
[ -z "${DESTDIR:-}" ] || export PKG_CONFIG_SYSROOT_DIR=$DESTDIR
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

check() { # check DESCRIPTION COMMAND...: runs COMMAND, stops with DESCRIPTION if it fails
    local what=$1; shift
    if ! "$@" >"$work/log" 2>&1; then
        tail -n 30 "$work/log"
        echo "installcheck: FAILED: $what" >&2
        exit 1
    fi
}

got=$(pkg-config --modversion nabla)
[ "$got" = "$version" ] || { echo "installcheck: FAILED: pkg-config says version '$got', want '$version'" >&2; exit 1; }
libdir=${DESTDIR:-}$(pkg-config --variable=libdir nabla)

# An example's own libraries: libm (the examples call sqrt and friends).
own_libs=-lm
for src in examples/*.c; do
    name=$(basename "$src" .c)
    # shared: the program must load the installed libnabla.so.N
    check "$name: build (shared)" $CC -o "$work/$name" "$src" $(pkg-config --cflags --libs nabla) $own_libs
    check "$name: loads the installed library" \
        bash -c "LD_LIBRARY_PATH='$libdir' ldd '$work/$name' | grep -F '$libdir/libnabla.so.'"
    check "$name: run (shared)" env LD_LIBRARY_PATH="$libdir" timeout 120 "$work/$name"
    # static: libnabla.a with its private libraries (BLAS, zlib, libm, pthreads)
    check "$name: build (static)" $CC -static -o "$work/$name-static" "$src" $(pkg-config --static --cflags --libs nabla) $own_libs
    check "$name: run (static)" timeout 120 "$work/$name-static"
    echo "installcheck: $name ok (shared and static)"
done

# the shared library's interface: exactly the library's functions that the
# installed headers declare (no internals)
includedir=${DESTDIR:-}$(pkg-config --variable=includedir nabla)
exported=$(nm -D --defined-only "$libdir/libnabla.so" | awk '{print $3}' | sort)
declared=$(cat "$includedir"/nabla*.h | grep -oE '\bnb_[a-z0-9_]+ *\(' | tr -d ' (' | sort -u)
defined=$(nm --defined-only "$libdir/libnabla.a" 2>/dev/null | awk '$2 == "T" {print $3}' | sort -u)
public=$(comm -12 <(echo "$declared") <(echo "$defined"))
if [ "$exported" != "$public" ]; then
    diff <(echo "$public") <(echo "$exported") | head -n 20
    echo "installcheck: FAILED: libnabla.so exports other functions than the headers declare (< headers, > library)" >&2
    exit 1
fi
check "installed nabla --version" bash -c "'$bindir/nabla' --version | grep -qx 'nabla $version'"
want_diff="[6*x*y, 3*x^2]'"  # a row: the gradient of a scalar in numerator layout
check "installed nabla diff" bash -c "[ \"\$('$bindir/nabla' diff '3*x^2*y' --wrt x,y --format ascii)\" = \"\$1\" ]" _ "$want_diff"
check "man page renders without warnings" \
    bash -c "MANWIDTH=80 man --warnings -l '$mandir/man1/nabla.1' 2>&1 >/dev/null | (! grep .)"
echo "installcheck: passed"
