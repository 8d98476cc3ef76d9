"""A reply as the chat shows and stores it: its text in pieces (one per decoded token) with the
reward and the search's choice at each, plus the final scores and the settings used."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..engine import Finished, Step

# What the footer shows that has no column of its own in the history: stored in the settings' JSON, under "figures",
# so that the schema stays as it is (databases made before open as they did, and older args-locals open new ones)
FIGURES = ("tokens_per_s", "objective_rewards", "objective_weights")


@dataclass
class Piece:
    text: str
    reward: float | None = None  # guide RM reward of the reply prefix ending here (ARGS modes)
    chosen_index: int | None = None  # rank of the chosen token among the policy's top k; 0 = policy's own choice


@dataclass
class Reply:
    pieces: list[Piece] = field(default_factory=list)
    stop_reason: str | None = None  # None while streaming
    reward: float | None = None  # the reward model's score of the whole reply
    judge_reward: float | None = None
    settings: dict = field(default_factory=dict)
    tokens_per_s: float = 0.0
    error: str | None = None
    objective_rewards: dict[str, float] | None = None  # the whole reply's guide reward by objective
    objective_weights: dict[str, float] | None = None  # the weights after the gate (reward/gates.py)
    dropped_turns: int = 0  # the oldest turns sent that did not fit the context, left out of the prompt (not stored)

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.pieces)

    @property
    def done(self) -> bool:
        return self.stop_reason is not None or self.error is not None

    def add_step(self, step: Step) -> None:
        guided = step.rewards is not None
        self.pieces.append(Piece(step.text, step.reward, step.chosen_index if guided else None))

    def finish(self, finished: Finished) -> None:
        # Finished.text is the authority (a stop string may have been cut from the streamed text).
        if finished.text != self.text:
            self.pieces = [Piece(finished.text)] if not self.pieces else self._trimmed(finished.text)
        self.stop_reason = finished.stop_reason
        self.reward = finished.reward
        self.objective_rewards = finished.objective_rewards
        self.objective_weights = finished.objective_weights
        self.settings = finished.settings
        self.tokens_per_s = finished.tokens_per_s
        self.dropped_turns = finished.dropped_turns

    def _trimmed(self, text: str) -> list[Piece]:
        kept, used = [], 0
        for p in self.pieces:
            if not text.startswith(p.text, used):
                break
            kept.append(p)
            used += len(p.text)
        if used < len(text):
            kept.append(Piece(text[used:]))
        return kept

    @property
    def override_rate(self) -> tuple[int, int] | None:
        """(tokens where ARGS overrode the policy's top choice, tokens decided by ARGS), or None."""
        guided = [p for p in self.pieces if p.chosen_index is not None]
        if not guided:
            return None
        return sum(p.chosen_index > 0 for p in guided), len(guided)

    # --- storage -------------------------------------------------------------------------
    def pieces_json(self) -> list:
        return [[p.text, p.reward, p.chosen_index] for p in self.pieces]

    def settings_json(self) -> dict:
        return {**self.settings, "figures": {name: getattr(self, name) for name in FIGURES}}

    @classmethod
    def from_stored(cls, content: str, reward=None, judge_reward=None, stop_reason=None, settings=None,
                    pieces=None) -> "Reply":
        parts = [Piece(*p) for p in pieces] if pieces else [Piece(content)]
        settings = dict(settings or {})
        figures = settings.pop("figures", None) or {}  # none in a reply stored before they were
        return cls(parts, stop_reason or "end_of_turn", reward, judge_reward, settings,
                   **{name: figures[name] for name in FIGURES if name in figures})
