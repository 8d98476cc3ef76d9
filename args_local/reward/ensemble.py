"""Several reward models as one: reward = Σ weight · reward over every objective of every model.

`load_reward_model("guide+encoder")` gives a RewardEnsemble. Its objectives are its models'
objectives named MODEL.OBJECTIVE ("guide.helpful", "guide.harmless", "encoder.harmless"), so
`--objective guide.helpful=1,encoder.harmless=0.5` weighs them like the heads of one model. Each
model keeps its own tokenizer, cache, gates and warm-ups; every objective is normalised by its own
mean and std, which is what makes the sum meaningful. The search still sees one reward per
candidate, and a model whose weights are all 0 is not run while decoding.
"""

from __future__ import annotations

import numpy as np

from ..errors import UserError
from ..home import COMBINE
from .heads import Objectives, check_weights


def combined(names: list[str], objectives: list[tuple[str, ...]]) -> tuple[str, tuple[str, ...]]:
    """The ensemble's name and objectives (MODEL.OBJECTIVE), from its models' names and objectives."""
    if len(set(names)) < len(names):
        raise UserError(f"each reward model may be combined once (got {COMBINE.join(names)})")
    return COMBINE.join(names), tuple(f"{name}.{o}" for name, own in zip(names, objectives) for o in own)


class RewardEnsemble(Objectives):
    kind = "ensemble"

    def __init__(self, parts: list):
        self.parts = parts
        self.name, self.objectives = combined([part.name for part in parts], [part.objectives for part in parts])
        self.provider = ", ".join(f"{part.name}: {part.provider}" for part in parts)
        self.manifest = {"kind": self.kind, "models": {part.name: part.manifest for part in parts}}
        self.default_objectives = {f"{part.name}.{o}": w for part in parts for o, w in part.default_objectives.items()}

    def part_weights(self, weights: dict | None) -> list[dict[str, float]]:
        """Each model's own weights, by its own objective names (UserError for an unknown name)."""
        weights = check_weights(self.default_objectives if weights is None else weights, self.objectives,
                                f"the reward model {self.name}")
        return [{o: weights[f"{part.name}.{o}"] for o in part.objectives} for part in self.parts]

    def prompt_weights(self, conversation: list[dict], weights: dict | None = None) -> dict[str, float]:
        out = {}
        for part, own in zip(self.parts, self.part_weights(weights)):
            out.update({f"{part.name}.{o}": w for o, w in part.prompt_weights(conversation, own).items()})
        return out

    def reward_matrix(self, conversation: list[dict], replies: list[str]) -> np.ndarray:
        return np.hstack([part.reward_matrix(conversation, replies) for part in self.parts])

    def start(self, conversation: list[dict], weights: dict | None = None) -> "EnsembleScorer":
        running = [(part, part.start(conversation, own))
                   for part, own in zip(self.parts, self.part_weights(weights)) if any(own.values())]
        return EnsembleScorer(running)


class EnsembleScorer:
    """Each running model scores the same candidates; the rewards add up (each already weighted)."""

    def __init__(self, running: list):
        self.running = running
        self.last_by_objective: dict[str, np.ndarray] = {}

    def score(self, ids: np.ndarray, pieces: list[bytes] | None = None) -> np.ndarray:
        total = np.zeros(len(ids))
        self.last_by_objective = {}
        for part, scorer in self.running:
            total = total + scorer.score(ids, pieces)
            self.last_by_objective.update({f"{part.name}.{o}": r for o, r in scorer.last_by_objective.items()})
        return total

    def accept(self, index: int) -> None:
        for _, scorer in self.running:
            scorer.accept(index)

    def skip(self, token: int, piece: bytes | None = None) -> None:
        for _, scorer in self.running:
            scorer.skip(token, piece)
