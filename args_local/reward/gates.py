"""Objective gates: an objective's weight scaled by how much the prompt calls for it.

A harmlessness reward pulls every reply towards caution. On a request for harm that is the
point; on an ordinary question it only turns answers into refusals ("I'm sorry, as an AI I
can't..."). A gate is a logistic classifier on the reward model's own features of the last
user message, trained to tell harm-seeking requests (HH-RLHF red-team prompts) from ordinary
ones (AlpacaEval instructions), so for each reply

    weight_i(prompt) = weight_i · σ(gate_i · [h_last, h_mean] + b_i)

and the search still sees one reward per candidate. It reads the last user message alone, as a
one-turn conversation, so a long friendly chat does not look like a red-team dialogue.
Manifest: `"gates": {"harmless": {"file": "gate-harmless.npz", "threshold": 0.5}}` (a LinearHead file).

With a `threshold` the gate is a switch, 1 where σ(...) >= threshold and 0 below. Scaled by σ, the
ordinary prompts the classifier is least sure of (σ 0.1-0.35) kept a tenth to a third of the
harmlessness weight, enough to make their first token "I'm sorry" (BENCHMARKS.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from .base import LinearHead


@dataclass(frozen=True)
class Gate:
    classifier: LinearHead
    threshold: float | None = None  # None: scale by σ; else switch at σ >= threshold


def gate_specs(manifest: dict) -> dict[str, dict]:
    """The manifest's `gates`, {objective: {"file", "threshold"}}, or one clear error if malformed."""
    gates = manifest.get("gates") or {}
    if not isinstance(gates, dict) or not all(isinstance(g, dict) and "file" in g for g in gates.values()):
        raise UserError("manifest.json: `gates` must map each objective to {\"file\", \"threshold\"}; "
                        "re-export the model.")
    return gates


def load_gates(directory: Path, manifest: dict, objectives: tuple[str, ...], hidden_size: int) -> dict[str, Gate]:
    gates = gate_specs(manifest)
    unknown = set(gates) - set(objectives)
    if unknown:
        raise UserError(f"manifest.json: gates for objectives the model does not have: {', '.join(sorted(unknown))}")
    return {name: Gate(LinearHead.load(directory / spec["file"], hidden_size), gate_threshold(spec))
            for name, spec in gates.items()}


def gate_threshold(spec: dict) -> float | None:
    threshold = spec.get("threshold")
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
        raise UserError(f"manifest.json: a gate's threshold must be a number in (0, 1) (got {threshold!r}); "
                        "re-export the model.")
    return float(threshold)


def last_user_turn(conversation: list[dict]) -> list[dict]:
    users = [m for m in conversation if m["role"] == "user"]
    return users[-1:] if users else conversation[-1:]


def gate_value(gate: Gate, features: np.ndarray) -> float:
    """σ(gate · features), or its switch: 1 where the prompt calls for the objective, 0 where it does not."""
    d = features.shape[-1] // 2
    p = float(1.0 / (1.0 + np.exp(-gate.classifier(features[:d], features[d:]))))
    return p if gate.threshold is None else float(p >= gate.threshold)
