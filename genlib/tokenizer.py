"""Tokenizer of a model folder: tokenizer.json through `tokenizers`, special tokens and a sandboxed Jinja chat template."""

from __future__ import annotations

import json
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import tokenizers

from genlib.errors import BadConfig, BadInput
from genlib.sampling import clean_prompt

MAX_MESSAGES = 256
MAX_TEMPLATE_OUTPUT = 1_000_000
ROLES = ("system", "user", "assistant")


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`, {} when the file is absent; BadConfig when it is unreadable."""
    if not path.is_file():
        return {}
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:  # RecursionError: nested too deeply
        raise BadConfig(f"{path.name} is not valid JSON: {e}") from e
    if not isinstance(d, dict):
        raise BadConfig(f"{path.name} must hold a JSON object")
    return d


def _token_text(v: Any) -> str | None:
    """tokenizer_config.json stores special tokens as strings or as AddedToken objects {"content": ...}."""
    if isinstance(v, dict):
        v = v.get("content")
    return v if isinstance(v, str) and v else None


def _ids(v: Any) -> list[int]:
    vals = v if isinstance(v, list) else [v]
    return [i for i in vals if isinstance(i, int) and not isinstance(i, bool)]


class _TemplateException(Exception):
    pass


def _raise_exception(message: str) -> None:
    raise _TemplateException(message)


class Tokenizer:
    """A `tokenizers.Tokenizer` with the model's special tokens, EOS ids and (for instruct models) chat template."""

    def __init__(
        self,
        tok: tokenizers.Tokenizer,
        tokenizer_config: dict[str, Any] | None = None,
        eos_ids: list[int] | None = None,
        chat_template: str | None = None,
    ) -> None:
        self.tok = tok
        self.tokenizer_config = dict(tokenizer_config or {})
        tc = self.tokenizer_config
        self.bos_token = _token_text(tc.get("bos_token"))
        self.eos_token = _token_text(tc.get("eos_token"))
        self.pad_token = _token_text(tc.get("pad_token"))
        self.chat_template = chat_template
        ids = list(eos_ids or [])
        if self.eos_token is not None and (i := tok.token_to_id(self.eos_token)) is not None and i not in ids:
            ids.append(i)
        self.eos_ids = ids

    @classmethod
    def from_folder(cls, folder: Path, model_config: dict[str, Any]) -> Tokenizer | None:
        """Read tokenizer.json (None when absent), tokenizer_config.json, chat_template.jinja, generation_config.json."""
        path = folder / "tokenizer.json"
        if not path.is_file():
            return None
        try:
            tok = tokenizers.Tokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises plain Exception subclasses for malformed files
            raise BadConfig(f"tokenizer.json could not be read: {e}") from e
        tc = read_json(folder / "tokenizer_config.json")
        template = tc.get("chat_template")
        if isinstance(template, list):  # named templates: take "default"
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            template = named.get("default")
        jinja_file = folder / "chat_template.jinja"
        if jinja_file.is_file():
            template = jinja_file.read_text(encoding="utf-8")
        if template is not None and not isinstance(template, str):
            raise BadConfig("tokenizer_config.json: chat_template must be a string")
        gen = read_json(folder / "generation_config.json")
        eos = _ids(model_config.get("eos_token_id"))
        eos += [i for i in _ids(gen.get("eos_token_id")) if i not in eos]
        return cls(tok, tc, eos, template or None)

    # ----- text <-> ids -----
    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of `text` (tokenizer.json's post-processor adds BOS etc. when add_special_tokens)."""
        return self.tok.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self.tok.decode(ids, skip_special_tokens=skip_special_tokens)

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size(with_added_tokens=True)

    def token_id(self, token: str) -> int | None:
        return self.tok.token_to_id(token)

    # ----- chat -----
    @cached_property
    def _template(self) -> Any:
        from jinja2 import TemplateError
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
        env.filters["tojson"] = lambda x, indent=None, separators=None, sort_keys=False, ensure_ascii=False: json.dumps(
            x, indent=indent, separators=separators, sort_keys=sort_keys, ensure_ascii=ensure_ascii
        )
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        try:
            return env.from_string(self.chat_template or "")
        except TemplateError as e:
            raise BadConfig(f"the chat template does not compile: {e}") from e

    def apply_chat_template(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """Render the chat template (sandboxed Jinja) for checked messages."""
        from jinja2 import TemplateError
        from jinja2.exceptions import SecurityError

        if self.chat_template is None:
            raise BadInput("this model has no chat template: use generate() with a plain prompt")
        if not isinstance(messages, list) or not messages:
            raise BadInput("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
        if len(messages) > MAX_MESSAGES:
            raise BadInput(f"at most {MAX_MESSAGES} messages")
        clean = []
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                raise BadInput(f"message {i} must be {{'role': one of {', '.join(ROLES)}, 'content': str}}")
            content = clean_prompt(m["content"], f"message {i}") if m["role"] == "user" or m["content"].strip() else ""
            clean.append({"role": m["role"], "content": content})
        try:
            text = self._template.render(
                messages=clean,
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token or "",
                eos_token=self.eos_token or "",
                tools=None,
            )
        except _TemplateException as e:
            raise BadInput(f"chat template refused the conversation: {e}") from e
        except (TemplateError, SecurityError, TypeError, ValueError) as e:
            raise BadConfig(f"the chat template failed: {type(e).__name__}: {e}") from e
        if len(text) > MAX_TEMPLATE_OUTPUT:
            raise BadConfig("the chat template produced an oversized prompt")
        return text

    # ----- saving -----
    def files(self) -> dict[str, bytes]:
        """tokenizer.json and tokenizer_config.json as save_pretrained writes them."""
        tc = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "clean_up_tokenization_spaces": False,
            **self.tokenizer_config,
        }
        if self.chat_template is not None:
            tc["chat_template"] = self.chat_template
        return {
            "tokenizer.json": self.tok.to_str().encode("utf-8"),
            "tokenizer_config.json": (json.dumps(tc, indent=2, ensure_ascii=False) + "\n").encode("utf-8"),
        }
