"""Reward models: one interface (see base.py), three backends chosen by the manifest's kind, and
several models weighed together as one (ensemble.py)."""

from __future__ import annotations

from pathlib import Path

from ..cpu import default_rm_threads
from ..errors import UserError
from ..home import reward_model_dirs

from .base import CandidateScorer, RewardModel
from .ensemble import combined
from .heads import check_weights, manifest_objectives
from .manifest import built_in_hint, read_manifest


def load_reward_model(directory: str | Path, threads: int | None = None, use_gpu: bool = True) -> RewardModel:
    """directory: a reward-model folder or a built-in name (guide, judge, encoder); several joined
    by '+' (guide+encoder) load as one RewardEnsemble."""
    directories = reward_model_dirs(directory)
    if len(directories) > 1:
        from .ensemble import RewardEnsemble

        return RewardEnsemble([load_reward_model(d, threads, use_gpu) for d in directories])
    directory = directories[0]
    manifest = read_manifest(directory)
    if manifest["kind"] == "decoder":
        from .decoder import DecoderRewardModel as cls
    elif manifest["kind"] == "encoder":
        from .encoder import EncoderRewardModel as cls
    else:
        from .gguf_embedding import GgufEmbeddingRewardModel as cls
    with built_in_hint(directory):
        return cls(directory, manifest, threads or default_rm_threads(), use_gpu)


def check_reward_model(value: str | Path, weights: dict | None = None, guiding: bool = False) -> list[dict]:
    """What a reward model's files show without loading it (the policy beside it takes seconds to load):
    each manifest whole, no model combined twice, `weights` naming only objectives it has, and (guiding) no
    judge among them. Its manifests."""
    directories = reward_model_dirs(value)
    manifests = [read_manifest(d) for d in directories]
    names = [m.get("name", d.name) for m, d in zip(manifests, directories)]  # as the loaders name them
    for name, manifest in zip(names, manifests) if guiding else ():
        check_can_guide(name, manifest["kind"])
    name, objectives = names[0], manifest_objectives(manifests[0])
    if len(manifests) > 1:
        name, objectives = combined(names, [manifest_objectives(m) for m in manifests])
    if weights:
        check_weights(weights, objectives, f"the reward model {name}")
    return manifests


def check_can_guide(name: str, kind: str) -> None:
    if kind == "gguf-embedding":  # it scores finished replies only
        raise UserError(f"{name} is a judge model: it cannot guide decoding. "
                        "Guide with a decoder or encoder reward model (the built-in guide or encoder).")


def members(rm: RewardModel) -> tuple:
    """The single models a reward model is made of: itself, or an ensemble's parts."""
    return tuple(getattr(rm, "parts", (rm,)))


__all__ = ["CandidateScorer", "RewardModel", "check_can_guide", "check_reward_model", "load_reward_model", "members"]
