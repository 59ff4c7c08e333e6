"""Build the Cython extensions; all metadata lives in pyproject.toml.

Environment switches (off by default):
  LLAMACY_DEBUG=1   bounds checks and asserts back on, -O0 -g
  LLAMACY_NATIVE=1  -march=native (local builds only; never for wheels)
"""

import os
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

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

# The matrix kernels: one translation unit per instruction set (llamacy/csrc/isa_*.c; a unit for
# another architecture compiles to nothing). GCC and clang target each function with an attribute,
# so these need no flags of their own; MSVC has no such attributes and gets the instruction set on
# the command line, per unit (it accepts the intrinsics without /arch, but would then mix legacy
# SSE encodings into AVX code).
ISA_SOURCES = {
    "llamacy/csrc/isa_scalar.c": [],
    "llamacy/csrc/isa_avx2.c": ["/arch:AVX2"],
    "llamacy/csrc/isa_avx512.c": ["/arch:AVX512"],
    "llamacy/csrc/isa_neon.c": [],
    "llamacy/csrc/isa_dotprod.c": [],
}


class BuildExt(build_ext):
    """build_ext that compiles, for MSVC, each kernel unit with its own /arch flag."""

    def build_extension(self, ext):
        units = [s for s in ext.sources if s in ISA_SOURCES and ISA_SOURCES[s]]
        if MSVC and units:
            ext.sources = [s for s in ext.sources if s not in units]
            for src in units:
                ext.extra_objects += self.compiler.compile(
                    [src], output_dir=self.build_temp, include_dirs=ext.include_dirs,
                    macros=ext.define_macros, extra_postargs=ext.extra_compile_args + ISA_SOURCES[src])
        super().build_extension(ext)


# the kernel modules ask the OS layer which CPU features they may use (lm_cpu_feature)
extensions = [
    ext("llamacy._mmap", ["llamacy/_mmap.pyx", MAP_SOURCE], libraries=MAP_LIBS),
    ext("llamacy._gguf_scan", ["llamacy/_gguf_scan.pyx"]),
    ext("llamacy._matmul_kernels", ["llamacy/_matmul_kernels.pyx", MAP_SOURCE, *ISA_SOURCES],
        libraries=MAP_LIBS, extra_compile_args=omp_compile, extra_link_args=omp_link),
    ext("llamacy._ops_kernels", ["llamacy/_ops_kernels.pyx", MAP_SOURCE], libraries=MAP_LIBS,
        extra_compile_args=omp_compile, extra_link_args=omp_link),
]

setup(ext_modules=cythonize(extensions, compiler_directives=directives, annotate=False),
      cmdclass={"build_ext": BuildExt})
