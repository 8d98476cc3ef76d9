"""Which input format an exported reward model gets: the one named by --format, else the layout of
the model's own chat template (what it was trained on), else the kind's plain default."""

from __future__ import annotations

import json
from pathlib import Path

from ..chat_template import Render, compile_chat_template
from ..errors import UserError
from ..formats import NAMED_FORMATS, InputFormat, named_format

TEMPLATE = "template"  # --format template: the model's own chat template
FORMAT_NAMES = (TEMPLATE, *NAMED_FORMATS)


def input_format_for(src: Path, name: str | None, default: str) -> InputFormat:
    if name is not None and name not in FORMAT_NAMES:
        raise UserError(f"unknown input format {name!r}; choose one of: {', '.join(FORMAT_NAMES)}")
    if name is not None and name != TEMPLATE:
        return named_format(name)
    render = model_chat_template(src)
    if render is None:
        if name == TEMPLATE:
            raise UserError(f"{src} has no chat template (tokenizer_config.json's chat_template, or "
                            f"chat_template.jinja): give --format {', '.join(NAMED_FORMATS)}")
        return named_format(default)
    try:
        return InputFormat.from_chat_template(render)
    except UserError as e:  # the template cannot be followed, refused or failed on the marked conversations
        raise UserError(f"{e}; give the input format with --format ({', '.join(NAMED_FORMATS)})") from None


def model_chat_template(src: Path) -> Render | None:
    """The chat template a Hugging Face tokenizer saved with the model, with its BOS and EOS text."""
    config = {}
    path = src / "tokenizer_config.json"
    if path.is_file():
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"{path} is not valid JSON ({e}); save the tokenizer again with save_pretrained()") from None
    source = config.get("chat_template") if isinstance(config, dict) else None
    if isinstance(source, list):  # several named templates: the default one
        source = next((t.get("template") for t in source if isinstance(t, dict) and t.get("name") == "default"), None)
    if not source and (src / "chat_template.jinja").is_file():
        source = (src / "chat_template.jinja").read_text(encoding="utf-8")
    if not isinstance(source, str) or not source:
        return None
    return compile_chat_template(source, token_text(config.get("bos_token")), token_text(config.get("eos_token")))


def token_text(token) -> str:
    """tokenizer_config.json writes a special token as its text or as {"content": text, …}."""
    if isinstance(token, dict):
        token = token.get("content")
    return token if isinstance(token, str) else ""
