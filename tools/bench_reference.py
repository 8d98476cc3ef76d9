"""Speed of args-local against the paper's reference ARGS code, measured in one interleaved run.

    python tools/bench_reference.py                 # 128 tokens, 3 repetitions after a warm-up
    python tools/bench_reference.py --json

Three configurations decode the same prompt(s) for the same number of tokens (end of turn ignored):
  reference     ARGS-greedy as the public code of Khanov et al. runs it (deeplearning-wisc/args,
                argsearch.py, ARGS.generate with method="greedy"): Hugging Face torch in fp32; the
                policy keeps its past_key_values for the next-token logits; its top-k candidates go to
                the reward model as ONE batch of k sequences; the token is argmax(logit + w * reward).
                That code's RM keeps a KV cache too: its first step runs the k full sequences, later
                steps feed only the k candidates against the cache, which is then reordered so all k
                rows hold the chosen sequence (`--reference-rm kv`, default). `--reference-rm full`
                instead re-runs the whole prompt + reply + candidate for all k at every step.
  ARGS-greedy   args-local through Engine.stream (llama.cpp policy, onnxruntime guide RM).
  plain greedy  args-local, no reward model: the floor.

Same weights on both sides: the built-in SmolLM2-135M-Instruct GGUF (dequantised into torch for the
reference), and the guide RM's backbone (the GGUF's first n layers, as its manifest says) with the
guide's own head and normalization over [last token, reply mean]; the reference keeps the reply mean
as a running sum of the chosen tokens' hidden states, as args-local does. Both sides read the same
prompt token ids and the same RM prefix ids, and neither applies a repetition penalty (the paper's
rule; --repeat-penalty changes args-local's). Tokens/s counts decode time only: the policy's
prompt prefill (and args-local's RM prefix prefill) are excluded, the reference's first RM batch
is included, as that code has no separate prefill.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' GGUF loader draws a bar of its own; read at import

from args_local import home  # noqa: E402
from args_local.commands.options import as_options  # noqa: E402
from args_local.errors import UserError  # noqa: E402


@dataclass
class Decoded:
    """What bench.measure reads from a generation."""

    tokens: list[int]
    seconds: float
    ms_policy_per_step: float
    ms_reward_per_step: float


def load_torch_models(gguf: Path, rm_manifest: dict, threads: int, progress):
    """The policy (full model) and the RM backbone (first n layers) as Hugging Face fp32 models."""
    try:
        import torch
        import transformers
    except ImportError:
        raise UserError("the reference needs torch and transformers: pip install -e '.[export]'") from None
    from args_local.export.decoder import load_gguf_backbone

    torch.set_num_threads(threads)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    policy, _ = load_gguf_backbone(gguf, progress)
    graph = rm_manifest["graph"]
    rm = copy.deepcopy(policy.model)  # the reference loads its RM as a model of its own
    if graph["n_layers"] < len(rm.layers):  # the guide reads layer n's output, before the final norm
        rm.layers = rm.layers[: graph["n_layers"]]
        rm.norm = torch.nn.Identity()
        rm.config.num_hidden_layers = graph["n_layers"]
    return policy.eval(), rm.eval()


class ReferenceArgs:
    """ARGS-greedy as the paper's code runs it, behind the `generate` that bench.measure calls."""

    def __init__(self, policy, rm, guide, prompt_ids, rm_full: bool, torch_threads: int):
        self.policy, self.rm, self.guide = policy, rm, guide  # guide: args-local's RM (tokens, head, normalization)
        self.prompt_ids, self.rm_full = prompt_ids, rm_full
        self.reward = SimpleNamespace(name=f"{guide.name} (torch fp32, {'no RM cache' if rm_full else 'RM KV cache'})",
                                      provider=f"torch {torch_threads} thread(s)")
        self.replies: dict[str, list[int]] = {}  # the last reply per prompt, for the agreement check

    def prompt_weights(self, conversation: list[dict], settings) -> dict:
        return self.guide.prompt_weights(conversation)  # what bench reports: the gated weights generate uses

    def generate(self, prompt: str, settings) -> Decoded:
        import torch

        k, w = settings.k, settings.w
        conversation = [{"role": "user", "content": prompt}]
        by_name = self.guide.prompt_weights(conversation)  # gated, as args-local's
        weights = np.array([by_name[n] for n in self.guide.objectives])
        rm_prefix = self.guide.encode(self.guide.format.context_text(conversation) + self.guide.format.reply_prefix)
        reply: list[int] = []
        reply_sum = torch.zeros(self.policy.config.hidden_size)
        ms_policy = ms_reward = 0.0
        with torch.no_grad():
            out = self.policy(input_ids=torch.tensor([self.prompt_ids(prompt)]), use_cache=True)
            cache, logits, rm_cache = out.past_key_values, out.logits[0, -1], None
            start = time.perf_counter()
            for step in range(settings.max_new_tokens):
                values, ids = torch.topk(logits, k)
                t = time.perf_counter()
                if self.rm_full or rm_cache is None:
                    seqs = torch.cat([torch.tensor([rm_prefix + reply]).repeat(k, 1), ids[:, None]], dim=1)
                    rm_out = self.rm(input_ids=seqs, use_cache=not self.rm_full)
                    hidden = rm_out.last_hidden_state[:, len(rm_prefix):]
                    last, mean = hidden[:, -1], hidden.mean(dim=1)
                else:
                    rm_out = self.rm(input_ids=ids[:, None], past_key_values=rm_cache, use_cache=True)
                    last = rm_out.last_hidden_state[:, -1]
                    mean = (reply_sum + last) / (len(reply) + 1)
                rewards = self.guide.heads(last.numpy(), mean.numpy()) @ weights
                j = int(torch.argmax(values + w * torch.from_numpy(rewards).to(values.dtype)))
                if not self.rm_full:
                    rm_cache = rm_out.past_key_values
                    rm_cache.reorder_cache(torch.full((k,), j))  # every row now holds the chosen sequence
                    reply_sum += last[j]
                ms_reward += (time.perf_counter() - t) * 1000
                reply.append(int(ids[j]))
                if step + 1 < settings.max_new_tokens:
                    t = time.perf_counter()
                    out = self.policy(input_ids=torch.tensor([[reply[-1]]]), past_key_values=cache, use_cache=True)
                    cache, logits = out.past_key_values, out.logits[0, -1]
                    ms_policy += (time.perf_counter() - t) * 1000
            seconds = time.perf_counter() - start
        self.replies[prompt] = reply
        n = len(reply)
        return Decoded(reply, seconds, ms_policy / n, ms_reward / n)


def agreement(a: list[int], b: list[int]) -> int:
    """How many leading tokens two replies share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def parse_args(argv):
    from args_local.bench import BENCH_PROMPTS, check_tokens
    from args_local.commands.options import RM_THREADS_HELP, THREADS_HELP, check_model_options, check_reward_files
    from args_local.cpu import default_rm_threads, default_threads
    from args_local.settings import DecodingSettings

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=128, help="tokens decoded per prompt and run (default 128)")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions after a warm-up (default 3)")
    p.add_argument("--prompts", type=int, default=1, help="how many of bench's prompts to decode per run (default 1)")
    p.add_argument("--k", type=int, default=10, help="ARGS candidates per step (default 10)")
    p.add_argument("--reference-rm", choices=("kv", "full"), default="kv",
                   help="kv: the reference RM's KV cache, as the paper's code (default); full: re-run every "
                        "candidate's whole sequence at every step")
    p.add_argument("--repeat-penalty", type=float, default=1.0,
                   help="args-local's repetition penalty (default 1.0 = off, the paper's rule)")
    p.add_argument("--threads", type=int, default=default_threads(), help=THREADS_HELP)
    p.add_argument("--rm-threads", type=int, default=default_rm_threads(), help=RM_THREADS_HELP)
    p.add_argument("--torch-threads", type=int, default=min(2, os.cpu_count() or 1),
                   help="torch threads for the reference (default: 2, or the cores if fewer)")
    p.add_argument("--policy", help="GGUF policy (default: the built-in SmolLM2-135M-Instruct)")
    p.add_argument("--reward", help="decoder RM: a directory or the built-in name guide (the default)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = p.parse_args(argv)
    if args.tokens < 1 or args.reps < 1 or args.torch_threads < 1:
        raise UserError("--tokens, --reps and --torch-threads must be at least 1")
    check_model_options(args)
    if not 1 <= args.prompts <= len(BENCH_PROMPTS):
        raise UserError(f"--prompts must be between 1 and {len(BENCH_PROMPTS)}")
    check_tokens(args.tokens)
    # what the input alone shows, told before the models load (the reference's torch copies take a minute)
    DecodingSettings(k=args.k, repeat_penalty=args.repeat_penalty).validated()
    manifests = check_reward_files(args.reward)
    if len(manifests) > 1 or manifests[0]["kind"] != "decoder":
        raise UserError(f"--reward {args.reward}: the reference needs one decoder reward model (got "
                        f"{' + '.join(m['kind'] for m in manifests)})")
    source, gguf = (manifests[0].get("source") or {}).get("gguf"), policy_path(args)
    if source and source != gguf.name:
        raise UserError(f"the guide RM was built from {source}, not {gguf.name}: the reference needs the RM's "
                        "own backbone; pass --policy with that GGUF")
    return args


def policy_path(args) -> Path:
    return Path(args.policy or home.default_policy()).expanduser()


def run(args) -> dict:
    from args_local import llama_build
    from args_local.bench import (BENCH_PROMPTS, N_CTX, Config, NeverEndingPolicy, current_rss_mb, machine_info,
                                  run_bench)
    from args_local.engine import Engine, as_messages
    from args_local.export.common import stderr_progress
    from args_local.policy import LlamaPolicy
    from args_local.reward import load_reward_model

    load_start = os.getloadavg()
    build = llama_build.status()  # before loading: the wheel on disk may be swapped while this runs
    progress = stderr_progress()
    gguf = policy_path(args)
    progress(f"loading args-local: llama.cpp {args.threads} thread(s), onnxruntime {args.rm_threads} thread(s)")
    policy = NeverEndingPolicy(LlamaPolicy(gguf, n_ctx=N_CTX, n_threads=args.threads))
    guide = load_reward_model(args.reward or home.default_reward(), args.rm_threads)
    rss_args_local = current_rss_mb()
    torch_policy, torch_rm = load_torch_models(gguf, guide.manifest, args.torch_threads, progress)
    rss_reference = current_rss_mb() - rss_args_local

    def prompt_ids(prompt: str) -> list[int]:  # the same ids args-local's engine gives the policy
        return policy.tokenize(policy.render_chat(as_messages(prompt)))

    reference = ReferenceArgs(torch_policy, torch_rm, guide, prompt_ids, args.reference_rm == "full",
                              args.torch_threads)
    args_engine = Engine(policy, guide)
    configs = [Config("reference", args.k, reference, repeat_penalty=args.repeat_penalty),
               Config("decoder", args.k, args_engine, repeat_penalty=args.repeat_penalty),
               Config(None, 1, Engine(policy), repeat_penalty=args.repeat_penalty)]
    prompts = list(BENCH_PROMPTS[: args.prompts])
    progress(f"measuring 3 configurations x {args.reps} repetitions x {len(prompts)} prompt(s) x {args.tokens} tokens")
    ref, argsl, plain = run_bench(configs, prompts, args.tokens, args.reps, progress)

    agree = []
    for prompt in prompts:  # args-local's ARGS reply once more, untimed, against the reference's last one
        ours = args_engine.generate(prompt, configs[1].settings.with_(max_new_tokens=args.tokens)).tokens
        theirs = reference.replies[prompt]
        agree.append({"prompt": prompt, "agree_tokens": agreement(ours, theirs), "of": len(ours),
                      "args_local": b"".join(policy.token_bytes(t) for t in ours).decode(errors="replace"),
                      "reference": b"".join(policy.token_bytes(t) for t in theirs).decode(errors="replace")})
    import torch

    return {
        "reference": ref, "args_greedy": argsl, "plain_greedy": plain,
        "args_over_reference": argsl["tokens_per_s"] / ref["tokens_per_s"],
        "args_over_plain": argsl["ratio_to_plain"],
        "agreement": agree,
        "memory": {"rss_mb_args_local": rss_args_local, "rss_mb_reference_models": rss_reference},
        "machine": {**machine_info(policy, args.threads, args.rm_threads), "load_average_start": list(load_start),
                    "load_average_end": list(os.getloadavg()), "torch": torch.__version__,
                    "torch_threads": args.torch_threads},
        "llama_build": build,
        "method": {"tokens_per_prompt": args.tokens, "prompts": len(prompts), "repetitions": args.reps, "warmup": 1,
                   "k": args.k, "w": configs[1].settings.w, "repeat_penalty": args.repeat_penalty,
                   "reference_rm": args.reference_rm,
                   "how": "end of turn ignored, every run decodes the same number of tokens; repetitions "
                          "interleaved across configurations; median with min-max; decode time only",
                   "peak_rss_mb": "process peak (ru_maxrss) after the configuration's last repetition, "
                                  "cumulative over all models loaded"},
    }


def table(r: dict) -> str:
    rows = [("reference (HF torch fp32)", r["reference"]), ("args-local ARGS-greedy", r["args_greedy"]),
            ("args-local plain greedy", r["plain_greedy"])]
    lines = ["| decoding | k | tokens/s (median, min-max) | ms/step | ms/step policy | ms/step RM |",
             "|---|---|---|---|---|---|"]
    for name, x in rows:
        k = "—" if x["reward_kind"] is None else x["k"]
        lines.append(f"| {name} | {k} | {x['tokens_per_s']:.1f} ({x['tokens_per_s_min']:.1f}-{x['tokens_per_s_max']:.1f}) "
                     f"| {1000 / x['tokens_per_s']:.1f} | {x['ms_policy_per_step']:.1f} | {x['ms_reward_per_step']:.1f} |")
    m, b, how, mem = r["machine"], r["llama_build"], r["method"], r["memory"]
    lines += ["", f"- ARGS / reference: **{r['args_over_reference']:.2f}x**; ARGS / plain: **{r['args_over_plain']:.2f}x**",
              f"- machine: {m['cpu']}, {m['cores']} cores; load average at start "
              f"{' '.join(f'{v:.2f}' for v in m['load_average_start'])}, at end "
              f"{' '.join(f'{v:.2f}' for v in m['load_average_end'])}",
              f"- llama.cpp {m['llama_cpp_python']}: build {b['installed_variant'] or b['recorded_variant'] or 'unknown'}, "
              f"{'with' if b['extra_bufts'] else 'without'} extra weight buffers, {m['policy_threads']} thread(s) "
              f"({b['system_info'] or 'features unknown'}); onnxruntime {m['onnxruntime']} {m['rm_threads']} thread(s); torch {m['torch']} "
              f"{m['torch_threads']} thread(s)",
              f"- reference RM: {'full sequence every step (no cache)' if how['reference_rm'] == 'full' else 'KV cache as in the paper code'}; "
              f"k={how['k']} w={how['w']} repeat penalty {how['repeat_penalty']}",
              f"- {how['prompts']} prompt(s) x {how['tokens_per_prompt']} tokens, {how['repetitions']} repetitions after "
              f"{how['warmup']} warm-up: {how['how']}.",
              f"- memory: args-local's policy and guide RM {mem['rss_mb_args_local']:.0f} MB resident; the reference's "
              f"torch models add {mem['rss_mb_reference_models']:.0f} MB"]
    if max(m["load_average_start"][0], m["load_average_end"][0]) > m["cores"]:
        why = (f"torch's {m['torch_threads']} threads wait for each other at every op, so the reference slows the "
               "most and ARGS / reference is overstated" if m["torch_threads"] > 1 else "the three do not slow alike")
        lines.append(f"- WARNING: the load average exceeded the {m['cores']} cores: other processes shared them, and "
                     f"{why}; measure on a quiet machine")
    lines += [f"- agreement, prompt {i + 1}: the reference and args-local ARGS replies share their first "
              f"{a['agree_tokens']} of {a['of']} tokens" for i, a in enumerate(r["agreement"])]
    return "\n".join(lines)


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
        result = run(args)
    except UserError as e:
        print(f"error: {as_options(str(e))}", file=sys.stderr)  # named as its options
        return 2
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
