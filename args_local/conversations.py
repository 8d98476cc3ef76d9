"""Reading conversations: HH-RLHF dialogues, instruction-style records, and the split used everywhere.

One reader serves pair files (`score --pairs`, the training tool) and prompt files (`eval --prompts`).
A record is one JSON object a line, in a .jsonl or .jsonl.gz file, in one of these forms:

    {"chosen": "\\n\\nHuman: …\\n\\nAssistant: …", "rejected": "…"}      HH-RLHF: the last Assistant turn
                                                                     is the reply, the rest is context
    {"instruction": "…", "chosen": "reply", "rejected": "reply"}     instruction-style (AlpacaEval pairs);
    {"prompt": "…", …}                                               "prompt" may stand for "instruction"
    {"messages": [{"role": …, "content": …}, …]}                     prompts only

The split: a record's own "split" field ("dev"/"train") if it has one, else instruction_index % 5 == 4
is dev (AlpacaEval: split by instruction), else the record's position in the file % 5 == 4 (HH-RLHF).
"""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .errors import UserError
from .paths import input_file

Message = dict  # {"role": "system" | "user" | "assistant", "content": str}

ROLES = ("system", "user", "assistant")
NEITHER = ("neither an HH-RLHF pair (\"chosen\"/\"rejected\" dialogues) nor instruction-style "
           "(\"instruction\" or \"prompt\", with \"chosen\"/\"rejected\" replies for pairs)")

_TURN = re.compile(r"\n\n(Human|Assistant):[ ]?")


def parse_hh_dialogue(text: str) -> list[Message]:
    """'\\n\\nHuman: … \\n\\nAssistant: …' → chat messages (roles user / assistant)."""
    parts = _TURN.split(text if text.startswith("\n\n") else "\n\n" + text)
    if len(parts) < 3:
        raise ValueError("no 'Human:' / 'Assistant:' turns found")
    messages = []
    for speaker, content in zip(parts[1::2], parts[2::2]):
        role = "user" if speaker == "Human" else "assistant"
        messages.append({"role": role, "content": content.strip()})
    return messages


def split_reply(messages: list[Message]) -> tuple[list[Message], str]:
    """(conversation before the final assistant turn, that turn's text)."""
    if not messages or messages[-1]["role"] != "assistant":
        raise ValueError("the dialogue does not end with an assistant turn")
    return messages[:-1], messages[-1]["content"]


def dev_or_train(index: int) -> str:
    return "dev" if index % 5 == 4 else "train"


@dataclass(frozen=True)
class PreferencePair:
    index: int  # position in the file
    conversation: list[Message]
    chosen: str
    rejected: str
    split: str = ""  # "dev" or "train"; left empty, it follows index % 5 == 4 → dev

    def __post_init__(self):
        if not self.split:
            object.__setattr__(self, "split", dev_or_train(self.index))


# --- one record → conversation / pair / split (ValueError says what is wrong with it) ---

def _text(obj: dict, key: str) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise ValueError(f"{key!r} must be a string (got {type(value).__name__})")
    return value


def instruction_of(obj: dict) -> str | None:
    """The instruction of an instruction-style record, None for other records."""
    key = "instruction" if "instruction" in obj else "prompt" if "prompt" in obj else None
    if key is None:
        return None
    text = _text(obj, key)
    if not text.strip():
        raise ValueError(f"{key!r} is empty")
    return text


def record_pair(obj: dict) -> tuple[list[Message], str, str]:
    """(conversation, chosen reply, rejected reply)."""
    instruction = instruction_of(obj)
    if instruction is not None and "chosen" in obj and "rejected" in obj:
        return [{"role": "user", "content": instruction}], _text(obj, "chosen"), _text(obj, "rejected")
    if instruction is None and "chosen" in obj and "rejected" in obj:
        conversation, chosen = split_reply(parse_hh_dialogue(_text(obj, "chosen")))
        _, rejected = split_reply(parse_hh_dialogue(_text(obj, "rejected")))
        return conversation, chosen, rejected
    raise ValueError(f"not a preference pair: {NEITHER}")


def record_prompt(obj: dict) -> list[Message]:
    """The conversation to continue; a trailing assistant turn (the reference reply) is dropped."""
    instruction = instruction_of(obj)
    if instruction is not None:
        return [{"role": "user", "content": instruction}]
    if "chosen" in obj:
        conversation, _ = split_reply(parse_hh_dialogue(_text(obj, "chosen")))
        return conversation
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
    raise ValueError(f"expected a 'chosen' (HH-RLHF), 'instruction', 'prompt' or 'messages' field: {NEITHER}")


def record_split(obj: dict, index: int) -> str:
    split = obj.get("split")
    if split is not None:
        if split not in ("dev", "train"):
            raise ValueError(f"'split' must be \"dev\" or \"train\" (got {split!r})")
        return split
    if isinstance(obj.get("instruction_index"), int) and not isinstance(obj["instruction_index"], bool):
        return dev_or_train(obj["instruction_index"])
    return dev_or_train(index)


# --- files ---

def open_text(path: Path):
    """Text of a .jsonl or gzip-compressed file, whatever its name (a .gz that is not gzip is refused).
    A UTF-8 byte order mark, which Notepad and Windows PowerShell write first, is not part of the text."""
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    if gzipped:
        return gzip.open(path, "rt", encoding="utf-8-sig")
    if path.name.endswith(".gz"):
        raise UserError(f"{path}: the name ends in .gz but it is not gzip-compressed; "
                        "recompress it with gzip or drop .gz from the name")
    return open(path, encoding="utf-8-sig")


def jsonl_records(path: str | Path, what: str = "file") -> Iterator[tuple[int, int, dict | str]]:
    """(line number, record index, object) for each non-empty line. The object is the problem (a str)
    when the line is not a JSON object; the caller stops or skips. An unreadable file is a UserError."""
    path = input_file(path, what, " (a .jsonl or .jsonl.gz file)")
    try:
        with open_text(path) as f:
            index = 0
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                    yield lineno, index, obj if isinstance(obj, dict) else "expected a JSON object"
                except json.JSONDecodeError as e:
                    yield lineno, index, f"not valid JSON ({e.msg})"
                index += 1
    except (OSError, EOFError, UnicodeDecodeError) as e:  # gzip.BadGzipFile is an OSError
        raise UserError(f"{what} {path}: cannot read it ({e}); is it a complete, UTF-8 .jsonl(.gz) file?") from None


def read_preference_pairs(path: str | Path) -> list[PreferencePair]:
    """Every pair of an HH-RLHF or instruction-style pair file; a bad line is a UserError naming it."""
    pairs = []
    for lineno, index, obj in jsonl_records(path, "pair file"):
        try:
            if isinstance(obj, str):
                raise ValueError(obj)
            conversation, chosen, rejected = record_pair(obj)
            split = record_split(obj, index)
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"{Path(path).expanduser()}:{lineno}: {e}") from None
        pairs.append(PreferencePair(index, conversation, chosen, rejected, split))
    if not pairs:
        raise UserError(f"pair file {path} is empty")
    return pairs
