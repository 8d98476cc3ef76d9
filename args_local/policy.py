"""The policy: a GGUF chat model run by llama.cpp, behind a small step-wise interface.

The engine only ever calls: render_chat, tokenize, prefill, step, logits, token_bytes,
is_end_of_turn. llama.cpp details (contexts, KV cache, logits pointers) stay in here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import home, llama_build
from .chat_template import compile_chat_template
from .cpu import default_threads
from .errors import UserError
from .paths import input_file
from .quiet import quiet_stderr
from .settings import check_load_options


def check_gguf_file(path: Path, what: str) -> Path:
    path = input_file(path, what, "; run tools/setup.sh to fetch the default models, or give the path of a .gguf file")
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise UserError(f"{what} {path} is not a GGUF file (wrong magic bytes); "
                            "args-local runs GGUF models (convert with llama.cpp's convert_hf_to_gguf.py).")
    return path


def check_gguf_loads(path: Path) -> None:
    """What llama.cpp reads of a GGUF before its weights (header, tensor table, that each tensor lies within
    the file), so that a download cut off past its magic bytes is found without loading the model."""
    llama_cpp = llama_build.load_llama_cpp()
    try:
        with quiet_stderr():
            llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    except (ValueError, RuntimeError) as e:
        raise unloadable(path, e) from None


def unloadable(path: Path, e: Exception) -> UserError:
    return UserError(f"could not load policy model {path}: {e}. "
                     f"The file may be cut off or damaged; {home.refetch_hint(path)}.")

# Tokens per prefill call: small enough that cancelling a long prompt takes effect within a
# fraction of a second on a CPU, large enough to keep llama.cpp's batched prefill efficient.
# Chunks start at multiples of it, so a prompt is always cut the same way (see `prefill`).
PREFILL_CHUNK = 64


# Seen on a Sapphire Rapids VM with a dynamic-int8 guide and a llama.cpp built before AMX patch
# level 2 (llama_build.patch_amx): its AMX kernels loaded their tile configuration once per thread,
# onnxruntime's int8 GEMM loaded its own on the same thread, and llama.cpp multiplied with the wrong
# tile shapes. Better one line that says so than a crash deep in the search.
NAN_LOGITS = ("llama.cpp returned NaN logits. On a CPU with AMX, a llama.cpp built before this version of "
              "args-local computes them beside an int8 reward model: run tools/setup.sh to rebuild it, or "
              "keep the AMX kernels off (ARGS_LOCAL_EXTRA_BUFTS=0).")


@dataclass(frozen=True)
class PolicyInfo:
    path: str
    size_bytes: int
    n_ctx: int
    n_ctx_train: int
    n_vocab: int
    n_gpu_layers: int
    gpu_offload: bool
    n_threads: int


def default_gpu_layers() -> int:
    return -1 if llama_build.load_llama_cpp().llama_supports_gpu_offload() else 0


class LlamaPolicy:
    """A GGUF chat model with a KV cache that is reused across calls and can be rolled back."""

    def __init__(self, path: str | Path, n_ctx: int = 4096, n_threads: int | None = None,
                 n_gpu_layers: int | None = None):
        check_load_options(n_ctx=n_ctx, threads=n_threads, n_gpu_layers=n_gpu_layers)
        llama_cpp = self._lib = llama_build.load_llama_cpp()
        path = check_gguf_file(path, "policy model")
        n_threads = n_threads or default_threads()
        if n_gpu_layers is None:
            n_gpu_layers = default_gpu_layers()
        proven = llama_build.load_options(path)  # probes once per CPU and build, so a bad build is an error here
        try:
            with quiet_stderr(), llama_build.model_params(**proven):
                self._llm = llama_cpp.Llama(
                    model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads,
                    n_gpu_layers=n_gpu_layers, logits_all=False, verbose=False,
                )
        except (ValueError, RuntimeError) as e:
            raise unloadable(path, e) from None
        self._vocab = llama_cpp.llama_model_get_vocab(self._llm.model)
        self.n_vocab = self._llm.n_vocab()
        self.n_ctx = self._llm.n_ctx()
        meta = self._llm.metadata
        self.chat_template = meta.get("tokenizer.chat_template")
        if not self.chat_template:
            raise UserError(f"{path} has no chat template in its metadata: it is a base model, "
                            "not a chat model. Use a chat/instruct GGUF as the policy.")
        self.bos_text = self._piece_text(self._llm.token_bos())
        self.eos_text = self._piece_text(self._llm.token_eos())
        self.info = PolicyInfo(
            path=str(path), size_bytes=path.stat().st_size, n_ctx=self.n_ctx,
            n_ctx_train=self._lib.llama_model_n_ctx_train(self._llm.model), n_vocab=self.n_vocab, n_gpu_layers=n_gpu_layers,
            gpu_offload=bool(n_gpu_layers) and llama_cpp.llama_supports_gpu_offload(), n_threads=n_threads,
        )
        self._template = None
        self._whole_chunks = 0  # leading cached tokens run by `prefill` in whole, aligned chunks

    # --- text <-> tokens -------------------------------------------------------------
    def render_chat(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """The model's own chat template (from the GGUF metadata) applied to the messages."""
        if self._template is None:
            self._template = compile_chat_template(self.chat_template, self.bos_text, self.eos_text)
        return self._template(messages, add_generation_prompt)

    def tokenize(self, text: str) -> list[int]:
        """Tokens of text with special tokens (<|im_start|> …) parsed; no BOS added here."""
        return self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def token_bytes(self, token: int) -> bytes:
        return self._llm.detokenize([token], special=False)

    def _piece_text(self, token: int) -> str:
        return self._llm.detokenize([token], special=True).decode("utf-8", errors="replace")

    def is_end_of_turn(self, token: int) -> bool:
        return bool(self._lib.llama_vocab_is_eog(self._vocab, token))

    # --- evaluation ------------------------------------------------------------------
    @property
    def n_cached(self) -> int:
        return self._llm.n_tokens

    def cached_tokens(self) -> list[int]:
        return self._llm.input_ids[: self._llm.n_tokens].tolist()

    def prefill(self, tokens: list[int], cancel=None) -> np.ndarray | None:
        """Evaluate a prompt, reusing the longest cached prefix; return the next-token logits.

        llama.cpp's numbers for a token depend on the batch it ran in (by up to a logit on the
        CPU), so reusing a cache filled another way would make the same prompt give another
        reply after some other one. Only whole aligned chunks are reused, and the rest runs in
        the same chunks as from an empty cache: a prompt's logits never depend on what ran before.

        It runs in chunks of PREFILL_CHUNK tokens: between chunks a set `cancel` (threading.Event)
        stops it (None is returned; the chunks done stay cached) and a Ctrl+C gets through."""
        if not tokens:
            raise UserError("the prompt is empty")
        if len(tokens) >= self.n_ctx:
            raise UserError(f"the prompt is {len(tokens)} tokens but the context holds {self.n_ctx}: "
                            "shorten it or raise n_ctx")
        cached = self._llm.input_ids[: self._llm.n_tokens]
        same = int(np.argmin(np.append(cached[: len(tokens)] == tokens[: len(cached)], False)))
        same = min(same, len(tokens) - 1, self._whole_chunks)  # at least one token must run for logits
        same -= same % PREFILL_CHUNK
        self.rollback(same)
        for start in range(same, len(tokens), PREFILL_CHUNK):
            if cancel is not None and cancel.is_set():
                return None
            chunk = tokens[start: start + PREFILL_CHUNK]
            self._eval(chunk)
            if len(chunk) == PREFILL_CHUNK:
                self._whole_chunks = start + PREFILL_CHUNK
        return self.logits()

    def step(self, token: int) -> np.ndarray:
        """Append one token; return the logits for the next one."""
        if self._llm.n_tokens >= self.n_ctx:
            raise UserError(f"the context ({self.n_ctx} tokens) is full")
        self._eval([token])
        return self.logits()

    def rollback(self, n_tokens: int) -> None:
        """Forget everything after the first n_tokens (the next eval drops their KV entries)."""
        self._llm.n_tokens = min(n_tokens, self._llm.n_tokens)
        self._whole_chunks = min(self._whole_chunks, self._llm.n_tokens)

    def _eval(self, tokens: list[int]) -> None:
        try:
            self._llm.eval(tokens)
        except RuntimeError as e:
            raise UserError(f"llama.cpp failed to evaluate {len(tokens)} tokens: {e}") from None

    def logits(self) -> np.ndarray:
        """Next-token logits at the last evaluated position (a copy: llama.cpp reuses its buffer)."""
        ptr = self._lib.llama_get_logits_ith(self._llm.ctx, -1)
        logits = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()
        if np.isnan(logits).any():
            raise UserError(NAN_LOGITS)
        return logits

    def close(self) -> None:
        self._llm.close()
