"""Reward models: one interface (see base.py), three backends, chosen by the manifest's kind."""

from __future__ import annotations

from pathlib import Path

from ..cpu import default_rm_threads
from ..home import reward_model_dir

from .base import CandidateScorer, RewardModel
from .manifest import read_manifest


def load_reward_model(directory: str | Path, threads: int | None = None, use_gpu: bool = True) -> RewardModel:
    """directory: a reward-model folder, or a built-in name (guide, judge, encoder)."""
    directory = reward_model_dir(directory)
    manifest = read_manifest(directory)
    threads = threads or default_rm_threads()
    if manifest["kind"] == "decoder":
        from .decoder import DecoderRewardModel as cls
    elif manifest["kind"] == "encoder":
        from .encoder import EncoderRewardModel as cls
    else:
        from .gguf_embedding import GgufEmbeddingRewardModel as cls
    return cls(directory, manifest, threads, use_gpu)


__all__ = ["CandidateScorer", "RewardModel", "load_reward_model"]
