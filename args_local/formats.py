"""How a reward model wants (conversation, reply) laid out as text; described in its manifest.

    {"turn": "<|im_start|>{role}\\n{content}<|im_end|>\\n",   # one context turn
     "reply_prefix": "<|im_start|>assistant\\n",              # opens the scored reply
     "reply_suffix": "<|im_end|>",                             # closes a finished reply
     "roles": {"user": "user", "assistant": "assistant"},      # role names as the RM knows them
     "context": "all" | "last_user",                           # which turns the RM sees
     "pair": false,                                            # encoder: (context, reply) as a text pair
     "before": null,                                           # or: read off the model's chat template
     "stripped_roles": []}                                     # roles whose contents the template strips

A format read off the model's own chat template ("before") writes, instead of `turn`, the text its
template puts before each turn's content: {"first": …, "user": …, "assistant": …}; that text carries
the template's special tokens (BOS included), so the tokenizer adds none of its own.
Such a template may strip the whitespace around a message (Llama 3, Gemma: `content | trim`): the
context's messages of those roles are stripped as it does, and so is a finished reply (score, eval,
best-of-n); a reply being written loses its leading whitespace as text (encoder RMs), while a decoder
RM reads the policy's own tokens as they come.

A decoder RM reads context + reply_prefix + reply (+ reply_suffix once the reply is finished);
an encoder RM with "pair" reads (context, reply_prefix + reply) as a pair of texts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .chat_template import Render, turn_layout
from .errors import UserError


@dataclass(frozen=True)
class InputFormat:
    turn: str = "<|im_start|>{role}\n{content}<|im_end|>\n"
    reply_prefix: str = "<|im_start|>assistant\n"
    reply_suffix: str = "<|im_end|>"
    roles: dict = field(default_factory=lambda: {"user": "user", "assistant": "assistant", "system": "system"})
    context: str = "all"
    pair: bool = False
    before: dict | None = None
    stripped_roles: list = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict) -> "InputFormat":
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise UserError(f"unknown input_format fields in manifest: {', '.join(sorted(unknown))}")
        fmt = cls(**d)
        if fmt.context not in ("all", "last_user"):
            raise UserError(f"input_format.context must be 'all' or 'last_user' (got {fmt.context!r})")
        if fmt.before is not None and not (isinstance(fmt.before, dict) and {"first", "user", "assistant"} <= set(fmt.before)):
            raise UserError("input_format.before must give the text before the first, a user and an assistant turn")
        if not set(fmt.stripped_roles) <= {"user", "assistant"}:
            raise UserError("input_format.stripped_roles may name only user and assistant")
        return fmt

    @classmethod
    def from_chat_template(cls, render: Render) -> "InputFormat":
        """The layout the model's own chat template writes (UserError where it cannot be followed)."""
        layout = turn_layout(render)
        return cls(before=layout["before"], reply_prefix=layout["reply_prefix"], reply_suffix=layout["reply_suffix"],
                   stripped_roles=layout["stripped_roles"])

    def to_dict(self) -> dict:
        """The fields that mean something: a template's layout ("before", "stripped_roles") replaces
        turn and roles."""
        unused = {"before", "stripped_roles"} if self.before is None else {"turn", "roles"}
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in unused}

    def reply_content(self, reply: str) -> str:
        """A finished reply as the template writes an assistant message (stripped where it strips them)."""
        return reply.strip() if "assistant" in self.stripped_roles else reply

    def finished_text(self, reply: str) -> str:
        """A finished reply and the end of its turn, as the template writes them."""
        return self.reply_content(reply) + self.reply_suffix

    def reply_so_far(self, reply: str) -> str:
        """A reply being written: its start is final, so it is stripped there where the template strips
        replies; its end may still grow."""
        return reply.lstrip() if "assistant" in self.stripped_roles else reply

    def context_text(self, conversation: list[dict]) -> str:
        turns = [{**m, "content": m["content"].strip()} if m["role"] in self.stripped_roles else m
                 for m in conversation if m["role"] != "system"]
        if self.context == "last_user":
            turns = [m for m in turns if m["role"] == "user"][-1:]
        if self.before is not None:
            return "".join((self.before["first"] if i == 0 else self.before.get(m["role"], "")) + m["content"]
                           for i, m in enumerate(turns))
        return "".join(
            self.turn.format(role=self.roles.get(m["role"], m["role"]), content=m["content"]) for m in turns
        )


PLAIN_TURNS = InputFormat(
    turn="{role}: {content}\n",
    reply_prefix="Assistant: ",
    reply_suffix="\n",
    roles={"user": "User", "assistant": "Assistant", "system": "System"},
)


PAIR_LAST_USER = InputFormat(turn="{content}", reply_prefix="", reply_suffix="", context="last_user", pair=True)

NAMED_FORMATS = {"chatml": InputFormat(), "plain": PLAIN_TURNS, "pair-last-user": PAIR_LAST_USER}


def named_format(name: str) -> InputFormat:
    if name not in NAMED_FORMATS:
        raise UserError(f"unknown input format {name!r}; choose one of: {', '.join(NAMED_FORMATS)}")
    return NAMED_FORMATS[name]
