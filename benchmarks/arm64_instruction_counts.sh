#!/usr/bin/env bash
# Instructions executed per weight block by llamacy's arm64 kernels and by llama.cpp's, counted
# under qemu-aarch64 (one instruction per translation block, every one logged): qemu says nothing
# about time, but the instruction streams are the real ones, compiled the way each project builds
# them (llamacy: -O3 as setup.py, run-time target attributes; llama.cpp: its arm quants.c at -O3
# with -march=armv8.2-a+dotprod, taken from the llama-cpp-python 0.3.36 sdist).
# Per block = (count at 24 blocks - count at 8 blocks) / 16: the call and setup cancel out.
# llama.cpp on an arm64 CPU with dotprod (0.3.36) repacks Q4_0, Q8_0, IQ4_NL, Q4_K, Q5_K and Q6_K
# matrices into interleaved copies in private memory and multiplies with ggml_gemv_* / ggml_gemm_*;
# both its repacked kernels and its plain vec_dot (the path without repacking) are counted.
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
aarch64-linux-gnu-g++ -std=c++17 $GG -c "$src/src/ggml-cpu/arch/arm/repack.cpp" -o "$work/ggml_arm_repack.o"
F="-O3 -fno-strict-aliasing -fno-math-errno -Wno-unused-function -Illamacy/csrc -Iplatform"
# shellcheck disable=SC2086
$CC -static $F benchmarks/arm64/icount.c llamacy/csrc/isa_*.c platform/map_posix.c "$work/ggml_arm_quants.o" \
    "$work/ggml_quants.o" "$work/ggml_arm_repack.o" -lstdc++ -lm -Wl,--unresolved-symbols=ignore-all -o "$work/icount"
count() { qemu-aarch64 -cpu max -singlestep -d nochain,exec "$work/icount" "$@" 2>&1 >/dev/null | grep -c '^Trace'; }
per_block() { # who type set T [rows] -> instructions per weight block, row and token
    local bs=32 rows=${5:-1}
    case $2 in *_K | iq4_xs) bs=256 ;; esac
    local c1 c2
    c1=$(count "$1" "$2" "$3" $((8 * bs)) "$4")
    c2=$(count "$1" "$2" "$3" $((24 * bs)) "$4")
    python3 -c "print(f'{($c2 - $c1) / 16 / $4 / $rows:.1f}')"
}
ratio() { python3 -c "print(f'{$1 / $2:.2f}x')"; }
# table TOKENS: one row per weight type. llamacy's 4-row kernel (Q4_0, Q8_0, IQ4_NL) takes up to 4
# tokens per call, llama.cpp's gemm 4; for 8 tokens both are counted per token.
table() {
    local T=$1 t g r d nn vr rowsT
    rowsT=$((T < 4 ? T : 4))
    echo "| weight type | llama.cpp repacked (gemv/gemm, 8 rows) | llama.cpp vec_dot | llamacy neon-dotprod | vs repacked | vs vec_dot | llamacy neon (no sdot) |"
    echo "|---|---|---|---|---|---|---|"
    for t in q4_0 q8_0 q4_K q5_K q6_K iq4_nl iq4_xs; do
        g=$(per_block ggml $t x "$T")
        if [ $t = iq4_xs ]; then r="-"; else r=$(per_block ggml-repack $t x "$T" 8); fi
        case $t in
        q4_0 | q8_0 | iq4_nl) d="$(per_block llamacy-rows $t neon-dotprod $rowsT 8) (4-row kernel)" ;;
        *) d=$(per_block llamacy $t neon-dotprod "$T") ;;
        esac
        nn=$(per_block llamacy $t neon "$T")
        if [ "$r" = "-" ]; then vr="(not repacked)"; else vr=$(ratio "${d%% *}" "$r"); fi
        echo "| $(echo $t | tr a-z A-Z | sed 's/_K$/_K/') | $r | $g | $d | $vr | $(ratio "${d%% *}" "$g") | $nn |"
    done
}
echo "Decode (one token): instructions per weight block and row"
echo
table 1
echo
echo "Prefill and batches (8 tokens): instructions per weight block, row and token"
echo
table 8
