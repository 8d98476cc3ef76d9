"""Chat templates, the Jinja programs Hugging Face tokenizers and GGUF files carry: rendering them,
and reading off one the text a reward model expects around each turn."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Callable

from .errors import UserError

Render = Callable[[list[dict], bool], str]  # (messages, add_generation_prompt) -> text


def compile_chat_template(source: str, bos_token: str = "", eos_token: str = "") -> Render:
    """The template as Hugging Face runs it: sandboxed, trimmed blocks, raise_exception and
    strftime_now available."""
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise UserError(f"the model's chat template refused the conversation: {message}")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols", generation_block()])
    env.globals.update(raise_exception=raise_exception, strftime_now=lambda fmt: datetime.now().strftime(fmt))
    env.filters["tojson"] = hf_tojson
    try:
        template = env.from_string(source)
    except TemplateError as e:
        raise UserError(f"the model's chat template is not valid Jinja: {e}") from None

    def render(messages: list[dict], add_generation_prompt: bool = True) -> str:
        try:
            # tools and documents are passed as None, as transformers does: `tools is defined` holds there
            return template.render(messages=messages, add_generation_prompt=add_generation_prompt, tools=None,
                                   documents=None, bos_token=bos_token, eos_token=eos_token)
        except (TemplateError, TypeError, ValueError, AttributeError, KeyError, IndexError) as e:
            raise UserError(f"the model's chat template failed on the conversation: {e}") from None

    return render


def generation_block():
    """{% generation %} … {% endgeneration %}: transformers marks the assistant's text with it (for
    training masks) and renders the text unchanged; so does this."""
    from jinja2.ext import Extension

    class GenerationBlock(Extension):
        tags = {"generation"}

        def parse(self, parser):
            next(parser.stream)
            return parser.parse_statements(("name:endgeneration",), drop_needle=True)

    return GenerationBlock


def hf_tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False) -> str:
    """transformers' tojson: plain json.dumps, where Jinja's own escapes <, >, & and ' as HTML."""
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


# Private-use characters: no template changes them, and no real message holds them.
_USER, _ASSISTANT, _NEXT_USER = "\ue000u\ue000", "\ue000a\ue000", "\ue000v\ue000"
# Whitespace around a message: Llama 3 and Gemma templates strip it (`content | trim`), most keep it.
_PAD = " \n"


def turn_layout(render: Render) -> dict:
    """What the template writes before each turn's content, before a reply and after a finished one,
    and which roles' contents it strips of surrounding whitespace: {"before": {"first", "user",
    "assistant"}, "reply_prefix", "reply_suffix", "stripped_roles"}, read off renderings of marked
    conversations. UserError when that layout does not reproduce the template's own text (a template
    that renders a turn by its position or by what follows it)."""
    user, reply = {"role": "user", "content": _USER}, {"role": "assistant", "content": _ASSISTANT}
    two_turns = render([user, reply, {"role": "user", "content": _NEXT_USER}], True)
    finished = render([user, reply], False)
    one_turn = render([user], True)
    try:
        first, rest = split_once(two_turns, _USER)
        before_assistant, rest = split_once(rest, _ASSISTANT)
        before_user, reply_prefix = split_once(rest, _NEXT_USER)
        head, reply_suffix = split_once(finished, _ASSISTANT)
    except ValueError:
        raise UserError("the model's chat template does not write each message's content once, as it was given") from None
    if one_turn != first + _USER + reply_prefix or head != first + _USER + before_assistant:
        raise UserError("the model's chat template lays out a turn differently depending on where it stands "
                        "in the conversation, which args-local cannot follow")
    return {"before": {"first": first, "user": before_user, "assistant": before_assistant},
            "reply_prefix": reply_prefix, "reply_suffix": reply_suffix,
            "stripped_roles": stripped_roles(render, two_turns)}


def stripped_roles(render: Render, two_turns: str) -> list[str]:
    """The roles whose content the template strips of surrounding whitespace, as str.strip() (and
    Jinja's trim) does: the marked conversation again, each content padded with whitespace."""
    turns = [("user", _USER), ("assistant", _ASSISTANT), ("user", _NEXT_USER)]
    padded = render([{"role": role, "content": _PAD + marker + _PAD} for role, marker in turns], True)
    kept = {marker: _PAD + marker + _PAD in padded for _, marker in turns}
    expected = two_turns  # what the padded rendering is if only the stripping differs
    for marker, was_kept in kept.items():
        if was_kept:
            expected = expected.replace(marker, _PAD + marker + _PAD)
    if padded != expected or kept[_USER] != kept[_NEXT_USER]:
        raise UserError("the model's chat template changes the whitespace around a message in a way args-local "
                        "cannot follow")
    return [role for role, marker in turns[:2] if not kept[marker]]


def split_once(text: str, marker: str) -> tuple[str, str]:
    if text.count(marker) != 1:
        raise ValueError(marker)
    before, after = text.split(marker)
    return before, after
