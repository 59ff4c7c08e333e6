#!/usr/bin/env bash
# What one weight block costs each kernel set's decode dot on this CPU, rows in cache (ns per
# block, one core): the kernels' own cost, apart from memory. Built as setup.py builds the
# kernels (-O3, run-time target attributes), from the same kernel units.
#   bash benchmarks/block_cost.sh [TYPE ...]        e.g.  bash benchmarks/block_cost.sh Q4_K Q6_K
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/llamacy-blockcost.XXXXXX)
trap 'rm -rf "$work"' EXIT
cc -O3 -fno-strict-aliasing -fno-math-errno -Wno-unused-function -Illamacy/csrc -Iplatform \
    benchmarks/c/block_cost.c llamacy/csrc/isa_*.c platform/map_posix.c -lm -o "$work/block_cost"
"$work/block_cost" "$@"
