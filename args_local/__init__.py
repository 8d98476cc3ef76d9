"""args-local: ARGS (reward-guided search) decoding for local GGUF models with ONNX reward models.

    import args_local
    engine = args_local.load()
    print(engine.generate("How do I make a good cup of coffee?").text)
"""

from .errors import RewardError, UserError

__all__ = ["DecodingSettings", "Engine", "Finished", "Notice", "RewardError", "Step", "UserError", "load"]


def load(policy=None, reward=None, **options):
    """An Engine on the given models (GGUF path, reward-model directory); None means the built-in one.

    options (Engine.load's): n_ctx (4096), threads (llama.cpp's), rm_threads (onnxruntime's),
    n_gpu_layers, use_gpu, need_reward (False: no reward model, for greedy, top-k and nucleus), overlap."""
    from .engine import Engine

    return Engine.load(policy, reward, **options)


def __dir__():
    # with the lazy names, so that dir(), a REPL's tab completion and help(args_local) show them
    return sorted({*globals(), *__all__})


def __getattr__(name):
    # Lazy, so that `python -m args_local.llama_build` runs before numpy or llama.cpp is installed,
    # and the CLI can reject bad arguments before importing the native libraries.
    if name in ("Engine", "Finished", "Notice", "Step"):
        from . import engine

        return getattr(engine, name)
    if name == "DecodingSettings":
        from .settings import DecodingSettings

        return DecodingSettings
    raise AttributeError(f"module 'args_local' has no attribute {name!r}")
