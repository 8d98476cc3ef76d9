"""The engine's events in OpenAI's shapes: chat.completion, chat.completion.chunk, model list."""

from __future__ import annotations

import time
import uuid

from ..engine import Finished

# OpenAI has two reasons a reply ends: it was done (stop) or it ran out of tokens (length)
FINISH_REASONS = {"end_of_turn": "stop", "stop_string": "stop"}


def finish_reason(done: Finished) -> str:
    return FINISH_REASONS.get(done.stop_reason, "length")


def usage(done: Finished) -> dict:
    return {"prompt_tokens": done.prompt_tokens, "completion_tokens": len(done.tokens),
            "total_tokens": done.prompt_tokens + len(done.tokens)}


def args_fields(done: Finished) -> dict:
    """The extra `args` field of a response: the reply's reward(s), per-step rewards, the settings
    used and timings, all from Finished (so what the engine adds there reaches clients too)."""
    return {k: v for k, v in done.to_dict().items() if k not in ("text", "tokens")}


class Reply:
    """One reply's id, time and model, shared by all its chunks."""

    def __init__(self, model: str):
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model

    def _head(self, kind: str) -> dict:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model,
                "system_fingerprint": None}

    def completion(self, done: Finished) -> dict:
        return {**self._head("chat.completion"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": done.text},
                             "logprobs": None, "finish_reason": finish_reason(done)}],
                "usage": usage(done), "args": args_fields(done)}

    def chunk(self, delta: dict, finish: str | None = None, **extra) -> dict:
        return {**self._head("chat.completion.chunk"),
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra}

    def last_chunk(self, done: Finished) -> dict:
        return self.chunk({}, finish_reason(done), args=args_fields(done))

    def usage_chunk(self, done: Finished) -> dict:
        """Sent after the last chunk when stream_options.include_usage is set, as OpenAI does."""
        return {**self._head("chat.completion.chunk"), "choices": [], "usage": usage(done)}


def model_object(model: str, created: int, details: dict) -> dict:
    return {"id": model, "object": "model", "created": created, "owned_by": "args-local", "args": details}
