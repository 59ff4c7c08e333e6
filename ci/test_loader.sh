#!/usr/bin/env bash
# The loader's C interface, tested through tests/c/map_driver.c on both implementations:
# platform/map_posix.c natively, and platform/map_win32.c cross-compiled with mingw-w64 and run
# under Wine (installed here from Debian's packages: gcc-mingw-w64-x86-64, wine64). The kernels
# have their own script, ci/test_kernels.sh.
#   ci/test_loader.sh            both
#   ci/test_loader.sh --posix    native only
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/llamacy-loader.XXXXXX)
trap 'rm -rf "$work"' EXIT
head -c 300007 /dev/urandom > "$work/data.bin"
: > "$work/empty.bin"
mkdir "$work/dir"

echo "== POSIX (native) =="
cc -O2 -Wall -Wextra -Iplatform tests/c/map_driver.c platform/map_posix.c -o "$work/driver"
"$work/driver" "$work/data.bin" "$work/missing.bin" "$work/empty.bin" "$work/dir"
[ "${1:-}" = "--posix" ] && exit 0

echo "== Windows (mingw-w64 + Wine) =="
if ! command -v x86_64-w64-mingw32-gcc >/dev/null || ! [ -x /usr/lib/wine/wine64 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        (timeout 600 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 900 \
            apt-get install -y -qq gcc-mingw-w64-x86-64 wine64) >/dev/null 2>&1 || true
    fi
fi
if ! command -v x86_64-w64-mingw32-gcc >/dev/null || ! [ -x /usr/lib/wine/wine64 ]; then
    echo "SKIP: mingw-w64 or wine64 is not installed and could not be installed here"
    exit 0
fi
x86_64-w64-mingw32-gcc -O2 -Wall -Iplatform tests/c/map_driver.c platform/map_win32.c -lpsapi -o "$work/driver.exe"
win() { echo "Z:${1//\//\\}"; }
export WINEPREFIX="$work/wineprefix" WINEDEBUG=-all
timeout 300 /usr/lib/wine/wine64 wineboot -i >/dev/null 2>&1 || true
timeout 300 /usr/lib/wine/wine64 "$work/driver.exe" "$(win "$work/data.bin")" "$(win "$work/missing.bin")" \
    "$(win "$work/empty.bin")" "$(win "$work/dir")" | tr -d '\r'
