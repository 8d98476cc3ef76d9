"""Where models and data live: $ARGS_LOCAL_HOME, else the XDG data directory."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UserError


def home() -> Path:
    if os.environ.get("ARGS_LOCAL_HOME"):
        return Path(os.environ["ARGS_LOCAL_HOME"]).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "args-local"


def models_dir() -> Path:
    return home() / "models"


def is_built_in(path: str | Path) -> bool:
    """Whether a model file or folder is one setup built (so tools/setup.sh, not the user, remakes it)."""
    return Path(path).expanduser().resolve().is_relative_to(models_dir().resolve())


def refetch_hint(*paths: str | Path) -> str:
    """What to do about damaged model files: setup fetches the built-in ones, the user their own."""
    return "tools/setup.sh fetches the built-in models again" if all(map(is_built_in, paths)) else "fetch it again"


def default_policy() -> Path:
    return models_dir() / "smollm2-135m-instruct" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_reward() -> Path:
    """The guide reward model ARGS decodes with."""
    return models_dir() / "guide"


def default_judge() -> Path:
    return models_dir() / "judge"


def default_judge_gguf() -> Path:
    """The judge's backbone (Gemma-3-270M); the judge directory links to it."""
    return models_dir() / "gemma-3-270m" / "gemma-3-270m-q4_k_m.gguf"


def default_encoder_reward() -> Path:
    return models_dir() / "encoder"


BUILT_IN_REWARDS = {"guide": default_reward, "judge": default_judge, "encoder": default_encoder_reward}


def reward_model_dir(value: str | Path) -> Path:
    """--reward / --judge: a built-in name (guide, judge, encoder), a directory, or the name of a model
    exported into the models folder (as `models` lists it) where no folder here has that name. A bare
    built-in name means the built-in model, even where the working directory has a folder of that name
    (write ./guide)."""
    text = str(value)
    if text in BUILT_IN_REWARDS:
        return BUILT_IN_REWARDS[text]()
    path, listed = Path(text).expanduser(), models_dir() / text
    if not path.exists() and text and "/" not in text and (listed / "manifest.json").is_file():
        return listed
    return path


def is_built_in_reward(path: str | Path) -> bool:
    """Whether PATH is one of the reward models setup builds (other built-in models are not reward models)."""
    return Path(path).expanduser().resolve() in {made().resolve() for made in BUILT_IN_REWARDS.values()}


def is_built_in_folder(path: str | Path) -> bool:
    """Whether PATH is a folder setup builds a model in: a reward model's, or the embedder's."""
    return is_built_in_reward(path) or Path(path).expanduser().resolve() == default_sentence_embedder().resolve()


COMBINE = "+"  # --reward guide+encoder: several reward models, weighed together (reward/ensemble.py)


def reward_model_dirs(value: str | Path) -> list[Path]:
    """--reward: one reward model, or several joined by '+'; a directory whose name holds '+' is one."""
    text = str(value)
    if COMBINE not in text or Path(text).expanduser().exists():
        return [reward_model_dir(text)]
    parts = text.split(COMBINE)
    if not all(part.strip() for part in parts):
        raise UserError(f"{text!r}: name a reward model on each side of '{COMBINE}', e.g. guide+encoder")  # --reward, --judge or load()'s
    return [reward_model_dir(part.strip()) for part in parts]


def default_sentence_embedder() -> Path:
    return models_dir() / "minilm-embedder"
