#!/usr/bin/env bash
# Instructions executed per weight block by llamacy's arm64 kernels and by llama.cpp's, counted
# under qemu-aarch64 (one instruction per translation block, every one logged): qemu says nothing
# about time, but the instruction streams are the real ones, compiled the way each project builds
# them (llamacy: -O3 as setup.py, run-time target attributes; llama.cpp: its arm quants.c at -O3
# with -march=armv8.2-a+dotprod, taken from the llama-cpp-python 0.3.36 sdist).
# Per block = (count at 24 blocks - count at 8 blocks) / 16: the call and setup cancel out.
#   bash benchmarks/arm64_instruction_counts.sh         (needs gcc-aarch64-linux-gnu, qemu-user, network for the sdist)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${LLAMACY_ICOUNT_WORK:-$(mktemp -d /tmp/llamacy-icount.XXXXXX)}
src=$(ls -d "$work"/llama_cpp_python-*/vendor/llama.cpp/ggml 2>/dev/null | head -1 || true)
if [ -z "$src" ]; then
    python3 -m pip download -q --no-binary :all: --no-deps --no-build-isolation -d "$work" llama-cpp-python==0.3.36
    tar -xzf "$work"/llama_cpp_python-0.3.36.tar.gz -C "$work"
    src="$work/llama_cpp_python-0.3.36/vendor/llama.cpp/ggml"
fi
CC=aarch64-linux-gnu-gcc
GG="-O3 -march=armv8.2-a+dotprod+fp16 -I$src/include -I$src/src -I$src/src/ggml-cpu -D_GNU_SOURCE"
$CC $GG -c "$src/src/ggml-cpu/arch/arm/quants.c" -o "$work/ggml_arm_quants.o"
$CC $GG -c "$src/src/ggml-cpu/quants.c" -o "$work/ggml_quants.o"
F="-O3 -fno-strict-aliasing -fno-math-errno -Wno-unused-function -Illamacy/csrc -Iplatform"
# shellcheck disable=SC2086
$CC -static $F benchmarks/arm64/icount.c llamacy/csrc/isa_*.c platform/map_posix.c "$work/ggml_arm_quants.o" \
    "$work/ggml_quants.o" -lm -Wl,--unresolved-symbols=ignore-all -o "$work/icount"
count() { qemu-aarch64 -cpu max -singlestep -d nochain,exec "$work/icount" "$@" 2>&1 >/dev/null | grep -c '^Trace'; }
per_block() { # who type set T -> instructions per weight block and token
    local bs=32
    case $2 in *_K) bs=256 ;; esac
    local c1 c2
    c1=$(count "$1" "$2" "$3" $((8 * bs)) "$4")
    c2=$(count "$1" "$2" "$3" $((24 * bs)) "$4")
    python3 -c "print(f'{($c2 - $c1) / 16 / $4:.1f}')"
}
echo "| weight type | block | llama.cpp (sdot), 1 token | llamacy neon-dotprod, 1 token | ratio | llamacy neon-dotprod, 8 tokens, per token | llamacy neon (no sdot), 1 token | llamacy neon, 8 tokens, per token |"
echo "|---|---|---|---|---|---|---|---|"
for t in q4_0 q8_0 q4_K q5_K q6_K; do
    g=$(per_block ggml $t x 1)
    d1=$(per_block llamacy $t neon-dotprod 1)
    d8=$(per_block llamacy $t neon-dotprod 8)
    n1=$(per_block llamacy $t neon 1)
    n8=$(per_block llamacy $t neon 8)
    case $t in *_K) b=256 ;; *) b=32 ;; esac
    r=$(python3 -c "print(f'{$d1 / $g:.2f}x')")
    echo "| $(echo "$t" | tr a-z A-Z | sed "s/_K/_K/") | $b | $g | $d1 | $r | $d8 | $n1 | $n8 |"
done
