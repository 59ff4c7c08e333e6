"""The exceptions llamacy raises, in one tree.

    LlamacyError                      every error llamacy itself raises
    ├── GGUFError (ValueError)        a malformed or unreadable GGUF file
    │   └── UnsupportedTypeError      a tensor type llamacy cannot decode (raised on data access)
    ├── MappingError (OSError)        the OS refused to map a file (bad file kind, empty, too large)
    ├── ModelError (ValueError)       a GGUF that is valid but not a model llamacy can run
    ├── TokenizerError (ValueError)   a vocabulary llamacy cannot build a tokenizer from
    ├── ConversionError (ValueError)  a llama2.c checkpoint or vocabulary that cannot be converted
    ├── BatchInputError (ValueError)  batch input that cannot be read (malformed JSONL, duplicate ids)
    ├── InvalidRequestError (ValueError)
    │                                 a request refused as asked: sampling parameters out of range,
    │                                 a prompt longer than the context, options of the wrong kind
    ├── ResourceError (MemoryError)   more than this machine has: a KV cache larger than its
    │                                 memory, address space the OS will not reserve
    └── ModelFileChangedError         the model file was truncated or replaced while mapped

Plain OS failures keep their standard types (``FileNotFoundError``, ``PermissionError``,
``IsADirectoryError``) so ``except OSError`` works as everywhere in Python; the C layer's
status codes become exceptions in one place, ``llamacy._mmap``. Every class that is also a
``ValueError`` stays one so that code written for llama-cpp-python (which raises ``ValueError``)
keeps working.
"""

from __future__ import annotations

__all__ = [
    "BatchInputError",
    "ConversionError",
    "GGUFError",
    "InvalidRequestError",
    "LlamacyError",
    "MappingError",
    "ModelError",
    "ModelFileChangedError",
    "ResourceError",
    "TokenizerError",
    "UnsupportedTypeError",
]


class LlamacyError(Exception):
    """Base class of every error raised by llamacy."""


class GGUFError(LlamacyError, ValueError):
    """A GGUF file is malformed, truncated or of an unsupported version."""


class UnsupportedTypeError(GGUFError):
    """A tensor's type is unknown or cannot be decoded by llamacy."""


class MappingError(LlamacyError, OSError):
    """A file could not be mapped (empty, too large for the address space, ...)."""


class ModelError(LlamacyError, ValueError):
    """The file is a valid GGUF, but not a model llamacy can run."""


class TokenizerError(LlamacyError, ValueError):
    """The vocabulary cannot be turned into a tokenizer."""


class ConversionError(LlamacyError, ValueError):
    """A file to convert (a llama2.c checkpoint or vocabulary) is malformed."""


class BatchInputError(LlamacyError, ValueError):
    """The batch input cannot be read (malformed JSONL, duplicate ids)."""


class InvalidRequestError(LlamacyError, ValueError):
    """A request cannot be served as asked: an option out of range or of the wrong kind, a prompt
    longer than the context window."""


class ResourceError(LlamacyError, MemoryError):
    """A request larger than this machine: a KV cache for n_ctx x slots beyond its memory, more
    threads than make sense, address space the OS refuses to reserve."""


class ModelFileChangedError(LlamacyError):
    """The mapped model file was truncated or replaced in place while in use. Replace a model
    by writing a new file and renaming it over the old one: a running process keeps its copy."""
