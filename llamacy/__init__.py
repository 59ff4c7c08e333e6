"""llamacy: LLaMA inference on the CPU, with GGUF weights mapped read-only and never copied."""

from llamacy._errors import (
    BatchInputError,
    ConversionError,
    GGUFError,
    InvalidRequestError,
    LlamacyError,
    MappingError,
    ModelError,
    TokenizerError,
    UnsupportedTypeError,
)
from llamacy._mmap import MappedFile
from llamacy.gguf import GGUFFile, GGUFValueType, TensorInfo
from llamacy.llama import Llama
from llamacy.quants import GGMLType, dequantize
from llamacy.system import system_info

__version__ = "0.1.0"

__all__ = [
    "BatchInputError",
    "ConversionError",
    "GGMLType",
    "GGUFError",
    "GGUFFile",
    "GGUFValueType",
    "InvalidRequestError",
    "Llama",
    "LlamacyError",
    "MappedFile",
    "MappingError",
    "ModelError",
    "TensorInfo",
    "TokenizerError",
    "UnsupportedTypeError",
    "__version__",
    "dequantize",
    "system_info",
]
