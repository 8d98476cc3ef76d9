"""args-local: ARGS (reward-guided search) decoding for local GGUF models with ONNX reward models.

    import args_local
    engine = args_local.load()
    print(engine.generate("How do I make a good cup of coffee?").text)
"""

from .engine import Engine, Finished, Notice, Step
from .errors import RewardError, UserError
from .settings import DecodingSettings

__all__ = ["DecodingSettings", "Engine", "Finished", "Notice", "RewardError", "Step", "UserError", "load"]


def load(policy=None, reward=None, **options) -> Engine:
    """An Engine on the given models (GGUF path, reward-model directory); None means the built-in one."""
    return Engine.load(policy, reward, **options)
