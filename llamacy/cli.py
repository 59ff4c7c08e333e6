"""The `llamacy` command: a thin layer over the Python API.

Every error is one line on stderr and exit code 2; no tracebacks.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from llamacy._errors import LlamacyError

EXIT_ERROR = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return str(n)


# -- info ---------------------------------------------------------------------------------------
def cmd_info(args: argparse.Namespace) -> int:
    from llamacy.gguf import GGUFFile, summarize
    from llamacy.system import system_info

    with GGUFFile(args.model) as f:
        s = summarize(f)
    s["system"] = system_info()
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    out = [f"file        {s['path']}",
           f"size        {s['file_size']} bytes ({_human(s['file_size'])}), GGUF v{s['version']}, "
           f"alignment {s['alignment']}, data at offset {s['data_offset']}",
           f"model       {s['architecture']}" + (f" ({s['name']})" if s["name"] else "")]
    for k, v in s["hyperparameters"].items():
        out.append(f"  {k:34s} {v}")
    t = s["tokenizer"]
    ids = ", ".join(f"{k.removesuffix('_token_id')}={v}" for k, v in t.items() if k.endswith("_id"))
    out.append(f"tokenizer   {t['model']}, {t['vocab_size']} tokens" + (f" ({ids})" if ids else ""))
    out.append(f"tensors     {s['tensor_count']}, {_human(s['tensor_bytes'])}")
    for name, e in s["tensor_types"].items():
        out.append(f"  {name:10s} {e['count']:5d} tensors  {_human(e['bytes']):>12s}")
    if s["unsupported_tensors"]:
        out.append(f"unsupported {len(s['unsupported_tensors'])} tensors of types llamacy cannot decode: "
                   + ", ".join(s["unsupported_tensors"][:5]))
    r = s["residency"]
    out.append("page cache  " + ("unknown (the OS will not tell for this file)" if r is None
                                 else f"{100 * r:.1f}% resident"))
    out.append(f"system      {s['system']['simd']} kernels, {s['system']['mapping']} mapping, "
               f"{s['system']['threads']} threads")
    print("\n".join(out))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="llamacy", description="LLaMA inference on the CPU with zero-copy GGUF weights.")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    info = sub.add_parser("info", help="show a GGUF model's metadata, tensors and page-cache residency")
    info.add_argument("model", metavar="MODEL.gguf")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(func=cmd_info)
    return p


def _version() -> str:
    from llamacy import __version__

    return f"llamacy {__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("llamacy: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except (LlamacyError, OSError, ValueError, KeyError) as e:
        print(f"llamacy: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_ERROR


def _one_line(e: BaseException) -> Any:
    text = str(e) if not isinstance(e, KeyError) else str(e.args[0] if e.args else e)
    return " ".join(text.split()) or type(e).__name__
