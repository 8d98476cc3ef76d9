"""Reading conversations: HH-RLHF dialogues, prompt files, and the split used everywhere."""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

Message = dict  # {"role": "system" | "user" | "assistant", "content": str}

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


@dataclass(frozen=True)
class PreferencePair:
    index: int  # position in the file: the split is index % 5 == 4 → dev
    conversation: list[Message]
    chosen: str
    rejected: str

    @property
    def split(self) -> str:
        return "dev" if self.index % 5 == 4 else "train"


def open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if str(path).endswith(".gz") else open(path, encoding="utf-8")


def read_jsonl(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, object) for each non-empty line; a malformed line is a UserError naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    rows = []
    with open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise UserError(f"{path}:{lineno}: expected a JSON object")
            rows.append((lineno, obj))
    if not rows:
        raise UserError(f"{path}: the file is empty")
    return rows


def read_preference_pairs(path: str | Path) -> list[PreferencePair]:
    """HH-RLHF pairs: the scored reply is the last Assistant turn; the rest is shared context."""
    pairs = []
    for index, (lineno, obj) in enumerate(read_jsonl(path)):
        try:
            chosen = parse_hh_dialogue(obj["chosen"])
            rejected = parse_hh_dialogue(obj["rejected"])
            conversation, chosen_reply = split_reply(chosen)
            _, rejected_reply = split_reply(rejected)
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"{path}:{lineno}: not an HH-RLHF pair with 'chosen' and 'rejected' ({e})") from None
        pairs.append(PreferencePair(index, conversation, chosen_reply, rejected_reply))
    return pairs
