"""Build the Cython extensions; all metadata lives in pyproject.toml.

Environment switches (off by default):
  LLAMACY_DEBUG=1   bounds checks and asserts back on, -O0 -g
  LLAMACY_NATIVE=1  -march=native (local builds only; never for wheels)
"""

import os
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("LLAMACY_DEBUG") == "1"
NATIVE = os.environ.get("LLAMACY_NATIVE") == "1"
WINDOWS = sys.platform == "win32"
MSVC = WINDOWS and "GCC" not in sys.version

# The OS layer: exactly one implementation of platform/llamacy_map.h per build.
MAP_SOURCE = "platform/map_win32.c" if WINDOWS else "platform/map_posix.c"
MAP_LIBS = ["psapi"] if WINDOWS else []

if MSVC:
    cflags = ["/Od", "/Zi"] if DEBUG else ["/O2"]
else:
    cflags = ["-O0", "-g"] if DEBUG else ["-O3"]
    cflags += ["-fno-strict-aliasing", "-Wno-unused-function", "-fno-math-errno"]
    if NATIVE:
        cflags.append("-march=native")

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": not DEBUG,
    "embedsignature": True,
}


def ext(name, sources, **kw):
    return Extension(
        name,
        sources,
        include_dirs=["platform", "llamacy"],
        extra_compile_args=cflags + kw.pop("extra_compile_args", []),
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        **kw,
    )


# OpenMP: GCC -fopenmp on Linux (auditwheel bundles libgomp), MSVC /openmp on Windows
# (delvewheel bundles vcomp140.dll). Apple's clang ships no OpenMP runtime, so macOS builds go
# without it and llamacy._matmul shares rows out over its own thread pool instead (the kernels
# release the GIL). LLAMACY_NO_OPENMP=1 / LLAMACY_OPENMP=1 override the default.
OPENMP = sys.platform != "darwin"
if os.environ.get("LLAMACY_NO_OPENMP") == "1":
    OPENMP = False
elif os.environ.get("LLAMACY_OPENMP") == "1":
    OPENMP = True
if not OPENMP:
    omp_compile, omp_link = [], []
elif MSVC:
    omp_compile, omp_link = ["/openmp"], []
elif sys.platform == "darwin":  # opt-in: needs a libomp for the target (e.g. Homebrew's)
    omp_compile, omp_link = ["-Xpreprocessor", "-fopenmp"], ["-lomp"]
else:
    omp_compile, omp_link = ["-fopenmp"], ["-fopenmp"]

extensions = [
    ext("llamacy._mmap", ["llamacy/_mmap.pyx", MAP_SOURCE], libraries=MAP_LIBS),
    ext("llamacy._gguf_scan", ["llamacy/_gguf_scan.pyx"]),
    ext("llamacy._matmul_kernels", ["llamacy/_matmul_kernels.pyx"], extra_compile_args=omp_compile,
        extra_link_args=omp_link),
    ext("llamacy._ops_kernels", ["llamacy/_ops_kernels.pyx"], extra_compile_args=omp_compile,
        extra_link_args=omp_link),
]

setup(ext_modules=cythonize(extensions, compiler_directives=directives, annotate=False))
