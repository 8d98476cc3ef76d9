"""An OpenAI chat-completions request body -> the messages and DecodingSettings the engine takes.

Layers, later wins: the server's command-line settings, the OpenAI fields (OPENAI_FIELDS: max_tokens,
temperature, top_p, seed, stop, the penalties and logit_bias, and llama.cpp's server's top_k, min_p and
repeat_penalty), then the `args` extra field, whose keys are DecodingSettings' own field names
(mapped generically, so a field added to DecodingSettings is settable here without a change).
Fields this server does not use are ignored, as OpenAI-compatible servers do, except those asking for
what it never produces (UNSUPPORTED), which are refused.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields
from typing import get_args, get_origin, get_type_hints

from ..engine import as_messages
from ..errors import UserError
from ..settings import MAX_K, MAX_SEED, DecodingSettings
from ..user_text import checked_text
from .errors import APIError, unknown_model

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
OPENAI_FIELDS = {"max_tokens": "max_new_tokens", "max_completion_tokens": "max_new_tokens",
                 "temperature": "temperature", "top_p": "top_p", "seed": "seed", "stop": "stop",
                 "presence_penalty": "presence_penalty", "frequency_penalty": "frequency_penalty",
                 "logit_bias": "logit_bias",
                 # not OpenAI's, but llama.cpp's and vLLM's servers take them (the openai package sends them in extra_body)
                 "top_k": "k", "min_p": "min_p", "repeat_penalty": "repeat_penalty"}
# fields asking for what this server never produces: a plain-text reply without it would pass for the
# model's choice (no tool called, JSON that does not parse, logprobs None), so any value but
# ASKS_FOR_NOTHING is a 400
UNSUPPORTED = {"tools": "no tool or function calls are made", "functions": "no tool or function calls are made",
               "response_format": 'replies are plain text (only {"type": "text"}: no JSON mode or schema)',
               "logprobs": "no log probabilities are returned", "top_logprobs": "no log probabilities are returned"}
ASKS_FOR_NOTHING = (None, False, [], {"type": "text"})


@dataclass
class ChatRequest:
    messages: list[dict]
    settings: DecodingSettings
    stream: bool
    include_usage: bool  # stream_options.include_usage: a last chunk with the token counts


def parse_chat_request(body, defaults: DecodingSettings, model_id: str, vocab_size: int,
                       random_seed: bool = False) -> ChatRequest:
    """random_seed: a request that gives no seed gets a random one, as from OpenAI (else defaults.seed)."""
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    model = body.get("model")
    if model is not None and model != model_id:
        raise unknown_model(model, model_id)
    if body.get("n") not in (None, 1):
        raise APIError(400, "n must be 1: one reply per request (for reward-reranked samples set "
                            '"args": {"mode": "best-of-n", "n": N})', param="n")
    for key, reason in UNSUPPORTED.items():
        if body.get(key) not in ASKS_FOR_NOTHING:
            raise APIError(400, f"{key} is not supported: {reason}", param=key)
    # named as the client sent it, not as max-new-tokens or k (top_k 0, llama.cpp's "off", has no match here)
    for key in ("max_tokens", "max_completion_tokens", "top_k"):
        if isinstance(body.get(key), int) and body[key] < 1:
            raise APIError(400, f"{key} must be at least 1 (got {body[key]})", param=key)
    if isinstance(body.get("top_k"), int) and body["top_k"] > min(MAX_K, vocab_size):
        raise APIError(400, f"top_k must be at most {min(MAX_K, vocab_size)} (got {body['top_k']})", param="top_k")
    changes, sources = {}, {}  # sources: each setting's field as the client sent it, an error's param
    for key, name in OPENAI_FIELDS.items():
        if body.get(key) is not None:
            changes[name], sources[name] = value_for(name, body[key], key), key
    extra = body.get("args")
    if extra is not None:
        if not isinstance(extra, dict):
            raise APIError(400, f"args must be an object with decoding settings ({', '.join(setting_names())})",
                           param="args")
        for name, value in extra.items():
            if name not in setting_names():
                raise APIError(400, f"unknown ARGS setting args.{name}; known: {', '.join(setting_names())}",
                               param=f"args.{name}")
            changes[name], sources[name] = value_for(name, value, f"args.{name}"), f"args.{name}"
    # -1: OpenAI takes it, and llama.cpp's and vLLM's servers read it as a random seed (some clients send it
    # always); settings.seed reports the one drawn
    if changes.get("seed", -1 if random_seed else None) == -1:
        changes["seed"] = random.randrange(MAX_SEED + 1)
    try:
        settings = defaults.with_(**changes).validated(vocab_size)
    except (UserError, TypeError, ValueError) as e:  # TypeError...: a value validation could not compare
        raise APIError(400, str(e) if isinstance(e, UserError) else f"invalid decoding settings: {e}",
                       param=culprit(defaults, changes, sources, vocab_size)) from None
    options = body.get("stream_options")
    return ChatRequest(messages=parse_messages(body.get("messages")), settings=settings,
                       stream=scalar(body.get("stream") or False, bool, "stream"),  # null: not streamed
                       include_usage=isinstance(options, dict) and options.get("include_usage") is True)


def culprit(defaults: DecodingSettings, changes: dict, sources: dict, vocab_size: int) -> str | None:
    """The field whose value alone makes the settings invalid, as the client named it; None if only
    values together do."""
    for name, value in changes.items():
        try:
            defaults.with_(**{name: value}).validated(vocab_size)
        except (UserError, TypeError, ValueError):
            return sources[name]
    return None


def setting_names() -> list[str]:
    return [f.name for f in fields(DecodingSettings)]


SCALARS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
PAIRS = {"logit_bias": '{"token id": bias}'}  # the object a setting of pairs is written as, if not {name: weight}


def value_for(name: str, value, param: str):
    """value as the field's declared type wants it (JSON has one number type and no tuples).
    Scalars and tuples of scalars are checked here; anything else (objective weights as
    {name: weight}, logit_bias as {"token id": bias}) is passed on for DecodingSettings itself to
    convert and validate."""
    hint = get_type_hints(DecodingSettings)[name]
    if hint in SCALARS:
        return scalar(value, hint, param)
    if get_origin(hint) is tuple:
        element = get_args(hint)[0]
        if isinstance(value, str) and element is str:
            return (scalar(value, str, param),)
        if isinstance(value, list):
            if element in SCALARS:
                return tuple(scalar(v, element, f"{param}[{i}]") for i, v in enumerate(value))
            return tuple(tuple(v) if isinstance(v, list) else v for v in value)
        if not isinstance(value, dict):
            shape = "a list" if element in SCALARS else f"an object {PAIRS.get(name, '{name: weight}')}"
            raise APIError(400, f"{param} must be {shape} (got {value!r})", param=param)
    return value


def scalar(value, kind: type, param: str):
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is bool and isinstance(value, bool):
        return value
    if kind is str and isinstance(value, str):
        return checked_text(value, param)  # JSON may carry lone surrogates, which no encoder takes
    if kind is int and number and float(value).is_integer():
        return int(value)
    if kind is float and number:
        return float(value)
    raise APIError(400, f"{param} must be {SCALARS[kind]} (got {value!r})", param=param)


def parse_messages(messages) -> list[dict]:
    """OpenAI messages -> [{role, content}] with text content; roles the template knows."""
    if not isinstance(messages, list) or not messages:
        raise APIError(400, "messages must be a non-empty list of {role, content} objects", param="messages")
    out = []
    for i, m in enumerate(messages):
        role = m.get("role") if isinstance(m, dict) else None
        if role not in ROLES:
            raise APIError(400, f"messages[{i}].role must be one of {', '.join(ROLES)} (got {role!r}); "
                                "tools and function calls are not supported", param=f"messages[{i}].role")
        out.append({"role": ROLES[role], "content": text_of(m.get("content"), i)})
    if not any(m["role"] == "user" for m in out):
        raise APIError(400, "messages needs at least one user message", param="messages")
    return as_messages(out)  # the engine's own checks (valid UTF-8, a prompt that is not empty), before queueing


def text_of(content, i: int) -> str:
    """A string, or a list of content parts of which only text parts are accepted, joined by newlines
    (as other OpenAI-compatible servers join them: words where two parts meet must not run together)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text"
                                         and isinstance(p.get("text"), str) for p in content):
        return "\n".join(p["text"] for p in content)
    raise APIError(400, f"messages[{i}].content must be a string or a list of text parts "
                        "(images and audio are not supported)", param=f"messages[{i}].content")
