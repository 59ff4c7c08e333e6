#!/usr/bin/env bash
# The kernels in C: tests/c/kernel_driver.c checks every kernel set a CPU runs against the scalar
# set, for every weight type, and the float helpers of ops.h against their generic loops. Run:
#   1. natively (x86-64 here);
#   2. under qemu-x86_64 as a Haswell (expects "scalar avx2") and a Westmere (no AVX: "scalar"),
#      which checks that the cpuid + XCR0 detection never picks a set the CPU lacks;
#   3. as Windows programs (mingw-w64, run under Wine), twice: with the per-function target
#      attributes, as GCC and clang build the kernels, and with -DLLAMACY_ISA_BY_UNIT, where each
#      kernel unit gets its instruction set from its compiler flags only -- the layout the MSVC
#      wheels get from setup.py's /arch:AVX2 and /arch:AVX512;
#   4. for arm64 (gcc-aarch64-linux-gnu, run under qemu-aarch64) as a Cortex-A53 (NEON without
#      dotprod: expects "scalar neon") and a Cortex-A76 (dotprod: "scalar neon neon-dotprod").
# qemu says nothing about speed: these runs check results and run-time selection only.
# Missing cross tools are installed from Debian's packages when run as root; a part whose tools
# cannot be had is skipped with the reason printed.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/llamacy-kernels.XXXXXX)
trap 'rm -rf "$work"' EXIT

UNITS="llamacy/csrc/isa_scalar.c llamacy/csrc/isa_avx2.c llamacy/csrc/isa_avx512.c llamacy/csrc/isa_neon.c
       llamacy/csrc/isa_dotprod.c"
FLAGS="-O2 -Wall -Wno-unused-function -Wno-unused-variable -Illamacy/csrc -Iplatform"
# GCC's spelling of setup.py's MSVC flags for the by-unit build
AVX2_FLAGS="-mavx2 -mfma -mf16c"
AVX512_FLAGS="$AVX2_FLAGS -mavx512f -mavx512bw -mavx512vl -mavx512vnni"

# need COMMAND PACKAGE...: install the packages when COMMAND is missing (as root, with apt)
need() {
    local cmd=$1
    shift
    command -v "$cmd" >/dev/null && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        (timeout 600 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 900 \
            apt-get install -y -qq "$@") >/dev/null 2>&1 || true
    fi
    command -v "$cmd" >/dev/null
}

# check LABEL EXPECTED_SETS COMMAND...: run the driver; print all but its "ok" lines; fail on a
# failed check, or when EXPECTED_SETS is given and the CPU's kernel sets differ from it
check() {
    local label=$1 want=$2 out got
    shift 2
    echo "== $label =="
    if ! out=$(timeout 600 "$@" 2>/dev/null | tr -d '\r'); then
        echo "$out" | grep -v '^ok'
        echo "FAIL: $label"
        exit 1
    fi
    echo "$out" | grep -v '^ok'
    got=$(echo "$out" | sed -n 's/^kernel sets: //p' | sed 's/ *$//')
    if [ -n "$want" ] && [ "$got" != "$want" ]; then
        echo "FAIL: $label: kernel sets '$got', expected '$want'"
        exit 1
    fi
}

# shellcheck disable=SC2086
cc $FLAGS tests/c/kernel_driver.c $UNITS platform/map_posix.c -lm -o "$work/kernels"
check "x86-64, this CPU" "" "$work/kernels"

if need qemu-x86_64 qemu-user; then
    check "x86-64 as a Haswell (qemu)" "scalar avx2" qemu-x86_64 -cpu Haswell "$work/kernels"
    check "x86-64 as a Westmere, no AVX (qemu)" "scalar" qemu-x86_64 -cpu Westmere "$work/kernels"
else
    echo "SKIP x86-64 CPU models: qemu-user is not installed and could not be installed here"
fi

if need x86_64-w64-mingw32-gcc gcc-mingw-w64-x86-64 wine64 && [ -x /usr/lib/wine/wine64 ]; then
    export WINEPREFIX="$work/wineprefix" WINEDEBUG=-all
    timeout 300 /usr/lib/wine/wine64 wineboot -i >/dev/null 2>&1 || true
    mingw=x86_64-w64-mingw32-gcc
    # shellcheck disable=SC2086
    $mingw $FLAGS tests/c/kernel_driver.c $UNITS platform/map_win32.c -lpsapi -o "$work/kernels.exe"
    check "Windows x86-64, target attributes (mingw-w64 + Wine)" "" /usr/lib/wine/wine64 "$work/kernels.exe"
    mkdir "$work/unit"
    for u in $UNITS; do
        case $u in
        *isa_avx2.c) f=$AVX2_FLAGS ;;
        *isa_avx512.c) f=$AVX512_FLAGS ;;
        *) f="" ;;
        esac
        # shellcheck disable=SC2086
        $mingw $FLAGS -DLLAMACY_ISA_BY_UNIT $f -c "$u" -o "$work/unit/$(basename "$u" .c).o"
    done
    # shellcheck disable=SC2086
    $mingw $FLAGS -DLLAMACY_ISA_BY_UNIT tests/c/kernel_driver.c platform/map_win32.c "$work"/unit/*.o -lpsapi \
        -o "$work/kernels-by-unit.exe"
    check "Windows x86-64, instruction sets by unit as MSVC builds them (mingw-w64 + Wine)" "" \
        /usr/lib/wine/wine64 "$work/kernels-by-unit.exe"
else
    echo "SKIP Windows: mingw-w64 or wine64 is not installed and could not be installed here"
fi

if need aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu libc6-dev-arm64-cross && need qemu-aarch64 qemu-user; then
    arm=aarch64-linux-gnu-gcc
    # the driver without the loop vectorizer: GCC 12's aarch64 vectorizer crashes on its main()
    # (an internal compiler error); the kernel units are built as setup.py builds them
    $arm $FLAGS -fno-tree-vectorize -c tests/c/kernel_driver.c -o "$work/driver-arm64.o"
    # shellcheck disable=SC2086
    $arm -static $FLAGS "$work/driver-arm64.o" $UNITS platform/map_posix.c -lm -o "$work/kernels-arm64"
    check "arm64 as a Cortex-A53, NEON without dotprod (qemu)" "scalar neon" \
        qemu-aarch64 -cpu cortex-a53 "$work/kernels-arm64"
    check "arm64 as a Cortex-A76, NEON with dotprod (qemu)" "scalar neon neon-dotprod" \
        qemu-aarch64 -cpu cortex-a76 "$work/kernels-arm64"
else
    echo "SKIP arm64: gcc-aarch64-linux-gnu or qemu-user is not installed and could not be installed here"
fi
