"""Chat prompts: a list of messages rendered to the prompt text an instruct model was trained on.

Two sources, chosen as llama-cpp-python chooses them so that the same messages give the same
prompt tokens:

- the file's own template (`tokenizer.chat_template`), rendered with Jinja2 in a sandbox with the
  names Hugging Face and llama.cpp give templates: `messages`, `bos_token`, `eos_token`,
  `add_generation_prompt`, `raise_exception`, `strftime_now`, `tools`; the template writes BOS
  itself, and the reply stops at the EOS text;
- a built-in format selected with `chat_format=` (`llama-2`, `llama-3`, `chatml`), or used when
  the file's template is exactly one of these (or the file has none: `llama-2`).

Rendering errors (a template's raise_exception, roles out of order, a malformed message) are
InvalidRequestError; a template that does not compile is a ModelError, raised on first use.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from llamacy._errors import InvalidRequestError, ModelError

__all__ = ["BUILTIN_FORMATS", "ChatFormat", "ChatPrompt", "JinjaFormat", "check_messages", "choose_format"]

ROLES = ("system", "user", "assistant", "tool", "function", "developer")


@dataclass
class ChatPrompt:
    text: str
    added_special: bool  # the text begins with BOS already: tokenize it without adding one
    stop: list[str] = field(default_factory=list)  # stop strings the format adds to the request's


def check_messages(messages: Any) -> list[dict]:
    """The messages as OpenAI and llama-cpp-python take them, checked: a non-empty list of
    {"role": str, "content": str | list | None, ...}."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise InvalidRequestError("messages must be a non-empty list of {\"role\", \"content\"} objects")
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise InvalidRequestError(f"messages[{i}] must be an object, not {type(m).__name__}")
        if m.get("role") not in ROLES:
            raise InvalidRequestError(f"messages[{i}].role must be one of {', '.join(ROLES)}, not {m.get('role')!r}")
        content = m.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise InvalidRequestError(f"messages[{i}].content must be a string, not {type(content).__name__}")
    return list(messages)


def _text(content: Any) -> str | None:
    return content if isinstance(content, str) else None


class ChatFormat:
    name = ""

    def __call__(self, messages: list[dict], **kwargs: Any) -> ChatPrompt:
        raise NotImplementedError


# ---- the file's template ---------------------------------------------------------------------------
def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None,
            sort_keys: bool = False) -> str:
    """Hugging Face's tojson: non-ASCII kept, keys in order."""
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _raise_exception(message: str) -> None:
    raise InvalidRequestError(f"the chat template refused the messages: {message}")


class JinjaFormat(ChatFormat):
    """A Jinja2 chat template, compiled on first use in an immutable sandbox (templates come
    with downloaded files: they may not touch Python objects, and their loops are bounded)."""

    def __init__(self, template: str, *, bos_token: str, eos_token: str, name: str = "chat_template.default"):
        self.template = template
        self.bos_token, self.eos_token = bos_token, eos_token
        self.name = name
        self._compiled = None

    def _compile(self):
        if self._compiled is None:
            import jinja2
            import jinja2.ext
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            class _Generation(jinja2.ext.Extension):  # HF's {% generation %} marks: rendered as their body
                tags = {"generation"}

                def parse(self, parser):
                    next(parser.stream)
                    return parser.parse_statements(("name:endgeneration",), drop_needle=True)

            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                extensions=[jinja2.ext.loopcontrols, _Generation])
            env.filters["tojson"] = _tojson
            try:
                self._compiled = env.from_string(self.template)
            except jinja2.TemplateError as e:
                raise ModelError(f"the file's chat template does not compile: {e}") from None
        return self._compiled

    def __call__(self, messages: list[dict], *, add_generation_prompt: bool = True, tools: Any = None,
                 **kwargs: Any) -> ChatPrompt:
        import jinja2

        template = self._compile()
        try:
            text = template.render(messages=messages, bos_token=self.bos_token, eos_token=self.eos_token,
                                   add_generation_prompt=add_generation_prompt, raise_exception=_raise_exception,
                                   strftime_now=lambda fmt: datetime.now().strftime(fmt), tools=tools, **kwargs)
        except jinja2.TemplateError as e:  # includes the sandbox's SecurityError
            raise InvalidRequestError(f"the chat template failed on these messages: {e}") from None
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
            raise InvalidRequestError(f"the chat template failed on these messages: {type(e).__name__}: {e}") from None
        return ChatPrompt(text, added_special=True, stop=[self.eos_token] if self.eos_token else [])


# ---- built-in formats (llama-cpp-python's, to the character) -------------------------------------------
def _system_message(messages: list[dict]) -> str:
    return next(((m.get("content") or "") for m in messages if m["role"] == "system"), "")


def _llama2(messages: list[dict], **kwargs: Any) -> ChatPrompt:
    """[INST] <<SYS>> ... <</SYS>> turns, as llama-cpp-python lays them out."""
    system = _system_message(messages)
    if system:
        system = f"[INST] <<SYS>>\n{system}\n<</SYS>>"
    roles = {"user": "<s>[INST]", "assistant": "[/INST]"}
    turns = [(roles[m["role"]], _text(m.get("content"))) for m in messages if m["role"] in roles]
    seps = (" ", "</s>")
    text = system + seps[0]
    for i, (role, content) in enumerate(turns):
        if system and i == 0:
            text += (content or "") + seps[i % 2]
        elif content:
            text += role + content + " " + seps[i % 2]
        else:
            text += role + " "
    return ChatPrompt(text + "[/INST]", added_special=False)


def _llama3(messages: list[dict], **kwargs: Any) -> ChatPrompt:
    header = "<|start_header_id|>{}<|end_header_id|>\n\n"
    text = ""
    for m in messages:
        if m["role"] in ("system", "user", "assistant"):
            content = _text(m.get("content"))
            text += header.format(m["role"]) + (content + "<|eot_id|>" if content else "")
    return ChatPrompt(text + header.format("assistant"), added_special=False, stop=["<|eot_id|>"])


def _chatml(messages: list[dict], **kwargs: Any) -> ChatPrompt:
    text = "<|im_start|>system\n" + _system_message(messages) + "<|im_end|>\n"  # even when empty, as theirs
    for m in messages:
        if m["role"] in ("user", "assistant"):
            content = _text(m.get("content"))
            text += f"<|im_start|>{m['role']}\n" + (content + "<|im_end|>\n" if content else "")
    return ChatPrompt(text + "<|im_start|>assistant\n", added_special=False, stop=["<|im_end|>"])


class _Builtin(ChatFormat):
    def __init__(self, name: str, fn: Callable[..., ChatPrompt]):
        self.name, self._fn = name, fn

    def __call__(self, messages: list[dict], **kwargs: Any) -> ChatPrompt:
        return self._fn(messages, **kwargs)


BUILTIN_FORMATS: dict[str, ChatFormat] = {n: _Builtin(n, f) for n, f in
                                          (("llama-2", _llama2), ("llama-3", _llama3), ("chatml", _chatml))}

# Templates llama-cpp-python recognises and replaces by its built-in format of the same prompt
_KNOWN_TEMPLATES = {
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' "
    "+ '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}": "chatml",
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}": "llama-3",
}


def choose_format(chat_format: str | None, template: Any, *, bos_token: str, eos_token: str) -> ChatFormat:
    """The format for `chat_format` (a built-in name), else the file's template, else llama-2."""
    if chat_format is not None:
        if chat_format in BUILTIN_FORMATS:
            return BUILTIN_FORMATS[chat_format]
        if chat_format == "chat_template.default" and isinstance(template, str):
            return JinjaFormat(template, bos_token=bos_token, eos_token=eos_token)
        raise InvalidRequestError(f"chat_format {chat_format!r} is not one of "
                                  f"{', '.join(BUILTIN_FORMATS)} (or chat_template.default for the file's template)")
    if isinstance(template, str) and template:
        known = _KNOWN_TEMPLATES.get(template)
        return BUILTIN_FORMATS[known] if known else JinjaFormat(template, bos_token=bos_token, eos_token=eos_token)
    return BUILTIN_FORMATS["llama-2"]
