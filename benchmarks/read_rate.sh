#!/usr/bin/env bash
# The read rate of a mapped file in the page cache (the ceiling of a decode step, which reads
# every weight once): 2 threads stream their halves with the widest loads this CPU has.
#   bash benchmarks/read_rate.sh benchmarks/models/llama-7b-q4_k_m-random.gguf [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/llamacy-readrate.XXXXXX)
trap 'rm -rf "$work"' EXIT
cc -O2 -march=native -fopenmp benchmarks/c/read_rate.c -o "$work/read_rate"
"$work/read_rate" "$@"
