"""llamacy: LLaMA inference on the CPU, with GGUF weights mapped read-only and never copied.

The public surface is this module's ``__all__``; every ``llamacy._name`` module is an
implementation detail. Where things live:

    _mmap.pyx        MappedFile over platform/llamacy_map.h (the one C interface to the OS)
    _gguf.py         the GGUF reader          _quants.py     GGML types, numpy (de)quantization
    _matmul.py       weight x activation products (kernels: _matmul_kernels.pyx, csrc/)
    _ops.py          norms, RoPE, attention   (kernels: _ops_kernels.pyx, csrc/ops.h)
    _model.py        the forward pass         _tokenizer.py  SentencePiece from GGUF
    _sampling.py     samplers and defaults    _generate.py   the generation engine
    _llama.py        the Llama API            _batch.py      `llamacy batch`
    _diagnostics.py  residency and memory     _convert.py    llama2.c -> GGUF
    _render.py, _cli.py  what the `llamacy` command prints, and the command
"""

from llamacy._batch import Summary as BatchSummary
from llamacy._batch import read_requests
from llamacy._batch import run as run_batch
from llamacy._convert import convert_llama2c
from llamacy._diagnostics import (
    FileResidency,
    MappingShare,
    ProcessMemory,
    Report,
    anonymous_bytes,
    evict,
    file_residency,
    mapping_sharing,
    prefetch,
    process_memory,
    report,
)
from llamacy._errors import (
    BatchInputError,
    ConversionError,
    GGUFError,
    InvalidRequestError,
    LlamacyError,
    MappingError,
    ModelError,
    ModelFileChangedError,
    ResourceError,
    TokenizerError,
    UnsupportedTypeError,
)
from llamacy._generate import Request
from llamacy._gguf import GGUFFile, GGUFValueType, TensorInfo
from llamacy._llama import Llama
from llamacy._mmap import MappedFile
from llamacy._model import LlamaConfig, LlamaModel
from llamacy._quants import GGMLType, dequantize
from llamacy._sampling import Sampler, SamplingParams
from llamacy._system import system_info
from llamacy._tokenizer import Tokenizer

__version__ = "0.1.0"

__all__ = [
    "BatchInputError",
    "BatchSummary",
    "ConversionError",
    "FileResidency",
    "GGMLType",
    "GGUFError",
    "GGUFFile",
    "GGUFValueType",
    "InvalidRequestError",
    "Llama",
    "LlamaConfig",
    "LlamaModel",
    "LlamacyError",
    "MappedFile",
    "MappingError",
    "MappingShare",
    "ModelError",
    "ModelFileChangedError",
    "ProcessMemory",
    "Report",
    "Request",
    "ResourceError",
    "Sampler",
    "SamplingParams",
    "TensorInfo",
    "Tokenizer",
    "TokenizerError",
    "UnsupportedTypeError",
    "__version__",
    "anonymous_bytes",
    "convert_llama2c",
    "dequantize",
    "evict",
    "file_residency",
    "mapping_sharing",
    "prefetch",
    "process_memory",
    "read_requests",
    "report",
    "run_batch",
    "system_info",
]
