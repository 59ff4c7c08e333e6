#!/usr/bin/env bash
# Part of the Python test suite on arm64, under qemu-aarch64 (user-mode emulation):
#   - CPython 3.11 for arm64 from Debian's packages, unpacked into a folder (no chroot, no binfmt);
#   - llamacy's runtime dependencies and pytest as PyPI's manylinux aarch64 wheels;
#   - llamacy's extensions cythonized here and cross-compiled with gcc-aarch64-linux-gnu, with the
#     flags setup.py uses (-O3, OpenMP, every kernel unit);
#   - the test suite (but the Ray tests and four that measure qemu rather than arm64) on a
#     Cortex-A76, whose best set is neon-dotprod -- the kernel tests check every set the CPU has --
#     then the end-to-end model tests again with LLAMACY_SIMD=neon and =scalar.
# qemu says nothing about speed. Needs root and apt for the Debian packages (otherwise: SKIP).
#   ci/test_arm64_python.sh [PYTEST ARGS]     (with arguments: one pytest run with them)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
work=$(mktemp -d /tmp/llamacy-arm64.XXXXXX)
trap 'rm -rf "$work"' EXIT

if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null ||
    ! dpkg --print-foreign-architectures | grep -qx arm64; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        (dpkg --add-architecture arm64 && timeout 600 apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq gcc-aarch64-linux-gnu \
                libc6-dev-arm64-cross qemu-user) >/dev/null 2>&1 || true
    fi
fi
if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null ||
    ! dpkg --print-foreign-architectures | grep -qx arm64; then
    echo "SKIP arm64 Python tests: gcc-aarch64-linux-gnu, qemu-user or Debian's arm64 packages are not available here"
    exit 0
fi

echo "== arm64 CPython from Debian's packages =="
root=$work/root
mkdir -p "$work/debs" "$root"
chmod 755 "$work" && chmod 777 "$work/debs" # apt-get download runs as _apt
(
    cd "$work/debs"
    for p in python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libpython3.11-dev libc6 libexpat1 \
        zlib1g libffi8 libssl3 libbz2-1.0 liblzma5 libgomp1 libgcc-s1 libstdc++6 libncursesw6 libtinfo6 \
        libreadline8 libsqlite3-0 libuuid1 libdb5.3 libcrypt1 libnsl2 libtirpc3 libgssapi-krb5-2 libkrb5-3 \
        libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1; do
        timeout 300 apt-get download -qq "$p:arm64" >/dev/null
    done
)
for d in "$work"/debs/*.deb; do dpkg-deb -x "$d" "$root"; done
# the interpreter as a program of this machine: a script that runs it under qemu, given to Python as
# its own name (qemu -0), so that tests starting sys.executable in a subprocess run it the same way
cat > "$work/python3" <<EOF
#!/bin/sh
export PYTHONHOME="$root/usr"
exec qemu-aarch64 -L "$root" -cpu cortex-a76 -0 "$work/python3" "$root/usr/bin/python3.11" "\$@"
EOF
chmod +x "$work/python3"
py=("$work/python3")
"${py[@]}" -c "import platform, sys; print('python', sys.version.split()[0], platform.machine())"

echo "== dependencies: PyPI's aarch64 wheels =="
quiet() { "$@" 2>&1 | { grep -v '^WARNING' || true; }; } # pip's warnings about this machine's pip config
quiet python3 -m pip install -q --target "$work/site" --only-binary=:all: --python-version 3.11 --implementation cp \
    --platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64 --platform manylinux_2_28_aarch64 \
    "numpy>=1.23" "sentencepiece>=0.1.99" "protobuf>=3.20" "psutil>=5.9" "tokenizers>=0.19" "jinja2>=3.1" "pytest>=7" "gguf>=0.10"

echo "== llamacy, cross-compiled =="
quiet python3 -m pip install -q --target "$work/cython" "cython>=3.1"
pkg=$work/pkg
mkdir -p "$pkg"
cp -r llamacy tests pyproject.toml "$pkg/"
find "$pkg/llamacy" \( -name '*.so' -o -name '_*.c' -o -name '__pycache__' \) -prune -exec rm -rf {} +
# setup.py's directives (a release build)
(cd "$pkg" && PYTHONPATH="$work/cython" python3 -m cython -3 \
    -X boundscheck=False,wraparound=False,initializedcheck=False,cdivision=True,embedsignature=True \
    llamacy/_mmap.pyx llamacy/_gguf_scan.pyx llamacy/_matmul_kernels.pyx llamacy/_ops_kernels.pyx)
CC=aarch64-linux-gnu-gcc
CFLAGS="-O3 -fPIC -shared -fno-strict-aliasing -Wno-unused-function -fno-math-errno -fopenmp
        -I$root/usr/include -I$root/usr/include/python3.11 -I$repo/platform
        -I$pkg/llamacy -DNPY_NO_DEPRECATED_API=NPY_1_7_API_VERSION"
suffix=cpython-311-aarch64-linux-gnu.so
map=$repo/platform/map_posix.c
# shellcheck disable=SC2086
{
    $CC $CFLAGS "$pkg/llamacy/_mmap.c" "$map" -o "$pkg/llamacy/_mmap.$suffix"
    $CC $CFLAGS "$pkg/llamacy/_gguf_scan.c" -o "$pkg/llamacy/_gguf_scan.$suffix"
    $CC $CFLAGS "$pkg/llamacy/_matmul_kernels.c" "$map" "$repo"/llamacy/csrc/isa_*.c \
        -o "$pkg/llamacy/_matmul_kernels.$suffix"
    $CC $CFLAGS "$pkg/llamacy/_ops_kernels.c" "$map" -o "$pkg/llamacy/_ops_kernels.$suffix"
}

echo "== tests under qemu-aarch64 =="
cd "$pkg"
export PYTHONPATH="$pkg:$work/site" PYTHONDONTWRITEBYTECODE=1 PATH="$work:$work/site/bin:$PATH"
"${py[@]}" -c "import llamacy; print(llamacy.system_info())"
if [ $# -gt 0 ]; then
    "${py[@]}" -m pytest "$@"
    exit
fi
# Four tests measure what qemu-user changes, not arm64: its translation buffers count as the
# process's anonymous memory and PSS (6 MB grew where 2 MB is allowed), its mmap emulation gives no
# huge pages, and it touches part of a mapped file (an evicted file read 10.5% resident).
emulator=(--deselect tests/test_model.py::test_inference_does_not_copy_weights
    --deselect tests/test_diagnostics.py::test_three_processes_share_one_copy
    --deselect tests/test_diagnostics.py::test_evict_then_read
    --deselect tests/test_mmap.py::test_weights_are_mapped_with_huge_pages_where_linux_allows)
echo "-- the test suite (but the Ray tests), kernel set: the CPU's best (neon-dotprod)"
timeout 3000 "${py[@]}" -m pytest -q -p no:cacheprovider -m "not ray" "${emulator[@]}" tests
# the kernel tests check every set the CPU has; the end-to-end ones again on the other two
for simd in neon scalar; do
    echo "-- end to end, LLAMACY_SIMD=$simd"
    LLAMACY_SIMD=$simd timeout 1800 "${py[@]}" -m pytest -q -p no:cacheprovider "${emulator[@]}" \
        tests/test_model.py tests/test_kquants.py
done
