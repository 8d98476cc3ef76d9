"""Prompt files for eval: any record args_local.conversations reads (HH-RLHF pairs, instruction-style
{"instruction"|"prompt": …} lines or pairs, {"messages": [...]}), one prompt per distinct instruction."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..conversations import instruction_of, jsonl_records, record_prompt, record_split
from ..errors import UserError

@dataclass(frozen=True)
class EvalPrompt:
    index: int  # position among the usable prompts: the key replies are stored under
    line: int  # line in the file, for messages
    messages: list[dict]


def load_prompts(path: str | Path, limit: int | None = None, on_bad_line: str = "stop",
                 warn=lambda message: None, split: str = "all") -> list[EvalPrompt]:
    """The first `limit` usable prompts. A bad line stops with a UserError naming it, or is skipped (warn).

    split="dev" keeps the dev records (see conversations: the pairs the built-in heads never saw);
    split="train" the others (e.g. to choose w without touching the dev prompts). Pair files repeat an
    instruction over many lines (AlpacaEval: up to 24): only its first line makes a prompt."""
    path = Path(path).expanduser()
    prompts: list[EvalPrompt] = []
    seen: set[str] = set()
    for lineno, index, obj in jsonl_records(path, "prompt file"):
        if limit is not None and len(prompts) >= limit:
            break
        try:
            if isinstance(obj, str):
                raise ValueError(obj)
            messages = record_prompt(obj)
            if split != "all" and record_split(obj, index) != split:
                continue
        except ValueError as e:
            if on_bad_line == "stop":
                raise UserError(f"{path}:{lineno}: {e} (pass --on-bad-line skip to skip such lines)") from None
            warn(f"{path}:{lineno}: skipped: {e}")
            continue
        instruction = instruction_of(obj)
        if instruction is not None:
            if instruction in seen:
                continue
            seen.add(instruction)
        prompts.append(EvalPrompt(len(prompts), lineno, messages))
    if not prompts:
        raise UserError(f"prompt file {path} has no usable prompts" + ("" if split == "all" else f" in the {split} split"))
    return prompts


def prompt_text(messages: list[dict]) -> str:
    """The conversation as plain text, for the coherence embedding."""
    return "\n".join(m["content"] for m in messages if m["role"] != "system")
