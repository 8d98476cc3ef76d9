"""Prompt files for eval: JSONL of HH-RLHF pairs, {"prompt": str} or {"messages": [...]}."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..conversations import open_text, parse_hh_dialogue, split_reply
from ..errors import UserError

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class EvalPrompt:
    index: int  # position among the usable prompts: the key replies are stored under
    line: int  # line in the file, for messages
    messages: list[dict]


def prompt_messages(obj: dict) -> list[dict]:
    """The conversation to continue; a trailing assistant turn (the reference reply) is dropped."""
    if "chosen" in obj:
        if not isinstance(obj["chosen"], str):
            raise ValueError("'chosen' must be an HH-RLHF dialogue string")
        conversation, _ = split_reply(parse_hh_dialogue(obj["chosen"]))
        return conversation
    if "prompt" in obj:
        if not isinstance(obj["prompt"], str) or not obj["prompt"].strip():
            raise ValueError("'prompt' must be a non-empty string")
        return [{"role": "user", "content": obj["prompt"]}]
    if "messages" in obj:
        messages = obj["messages"]
        if not isinstance(messages, list) or not all(
                isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str) for m in messages):
            raise ValueError(f"'messages' must be a list of {{'role': {'|'.join(ROLES)}, 'content': str}}")
        if messages and messages[-1]["role"] == "assistant":
            messages = messages[:-1]
        if not any(m["role"] == "user" for m in messages):
            raise ValueError("'messages' has no user turn")
        return [{"role": m["role"], "content": m["content"]} for m in messages]
    raise ValueError("expected a 'chosen' (HH-RLHF), 'prompt' or 'messages' field")


def load_prompts(path: str | Path, limit: int | None = None, on_bad_line: str = "stop",
                 warn=lambda message: None, split: str = "all") -> list[EvalPrompt]:
    """The first `limit` usable prompts. A bad line stops with a UserError naming it, or is skipped (warn).

    split="dev" keeps the records whose index % 5 == 4: the pairs the built-in heads never saw;
    split="train" the others (e.g. to choose w without touching the dev prompts)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"prompt file {path}: no such file")
    prompts: list[EvalPrompt] = []
    try:
        with open_text(path) as f:
            records = 0
            for lineno, line in enumerate(f, 1):
                if limit is not None and len(prompts) >= limit:
                    break
                if not line.strip():
                    continue
                records += 1
                if split != "all" and ((records - 1) % 5 == 4) != (split == "dev"):
                    continue
                try:
                    obj = json.loads(line)
                    if not isinstance(obj, dict):
                        raise ValueError("expected a JSON object")
                    messages = prompt_messages(obj)
                except ValueError as e:  # json.JSONDecodeError is a ValueError too
                    problem = e.msg if isinstance(e, json.JSONDecodeError) else str(e)
                    if on_bad_line == "stop":
                        raise UserError(f"{path}:{lineno}: {problem} (pass --on-bad-line skip to skip such lines)") from None
                    warn(f"{path}:{lineno}: skipped: {problem}")
                    continue
                prompts.append(EvalPrompt(len(prompts), lineno, messages))
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise UserError(f"prompt file {path}: cannot read it ({e})") from None
    if not prompts:
        raise UserError(f"prompt file {path} has no usable prompts")
    return prompts


def prompt_text(messages: list[dict]) -> str:
    """The conversation as plain text, for the coherence embedding."""
    return "\n".join(m["content"] for m in messages if m["role"] != "system")
