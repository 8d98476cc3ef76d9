"""The optional judge reward model: a second opinion on each reply, loaded on first use."""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..reward import load_reward_model


class Judge:
    def __init__(self, path: str | Path | None, threads: int | None = None):
        self.path = None if path is None else Path(path).expanduser()
        self.threads = threads
        self.error: str | None = None  # set once loading or scoring failed; the judge is then off
        self._model = None

    @property
    def available(self) -> bool:
        return self.path is not None and self.path.is_dir() and self.error is None

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def score(self, conversation: list[dict], reply: str) -> float | None:
        """The judge's reward for reply after conversation (no system turn), or None if there is no judge."""
        if not self.available or not reply.strip():
            return None
        try:
            if self._model is None:
                self._model = load_reward_model(self.path, self.threads)
            return float(self._model.score_replies(conversation, [reply])[0])
        except UserError as e:
            self.error = f"judge reward model off: {e}"
            return None
