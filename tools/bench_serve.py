"""Tokens/s through `args-local serve` (one streaming client) against the same generation in-process.

    python tools/bench_serve.py [--tokens 128] [--k 10] [--reps 5] [--threads N] [--rm-threads N] [--json]

Model options (--policy, --reward, --threads, --rm-threads, --n-gpu-layers, --n-ctx) and --objective are
bench's and serve's, and go to both sides.

Both sides decode the same prompts with the same settings (ARGS-greedy, deterministic), so they
produce the same tokens (the output says whether their replies were the same); each is timed from
request to last token as its user waits (prefill and the reply's final reward score included on
both sides). Runs alternate between the two, in one run, so a busy neighbour slows both alike. The
client reads the SSE lines with httpx and parses them once the timer has stopped, to charge the
server, not a client library, for the stream.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from args_local import home, llama_build  # noqa: E402
from args_local.bench import BENCH_PROMPTS  # noqa: E402
from args_local.commands.options import (add_model_options, add_objective_option, as_options, check_model_options,  # noqa: E402
                                         check_reward_files, objectives_from, option_name)
from args_local.cpu import default_rm_threads, default_threads  # noqa: E402
from args_local.engine import Engine  # noqa: E402
from args_local.errors import UserError  # noqa: E402
from args_local.policy import check_gguf_file  # noqa: E402
from args_local.settings import DecodingSettings  # noqa: E402


SHARED_OPTIONS = ("policy", "reward", "n_ctx", "threads", "rm_threads", "n_gpu_layers", "objective")


def start_server(args, settings: DecodingSettings) -> tuple[subprocess.Popen, str]:
    shared = [x for name in SHARED_OPTIONS if getattr(args, name) is not None
              for x in (option_name(name), str(getattr(args, name)))]
    proc = subprocess.Popen(
        [sys.executable, "-m", "args_local.cli", "serve", "--port", "0", *shared,
         "--mode", settings.mode, "--k", str(settings.k), "--w", str(settings.w),
         "--max-new-tokens", str(settings.max_new_tokens)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        if "http://" in line:
            return proc, line.split("http://", 1)[1].split("/v1", 1)[0]
    proc.kill()
    sys.exit("bench_serve: the server did not start (see its messages above)")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), all its threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def through_server(client: httpx.Client, prompt: str, tokens: int) -> tuple[int, float, float, str]:
    """(tokens, seconds from request to last token, the engine's own decode-only tokens/s, the reply)."""
    body = {"model": "args-local", "messages": [{"role": "user", "content": prompt}], "max_tokens": tokens,
            "stream": True, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    data = []
    with client.stream("POST", "/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if line.startswith("data: {"):
                data.append(line)
    seconds = time.perf_counter() - start
    chunks = [json.loads(line[6:]) for line in data]  # after the timer: the client's parsing is not the server's
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    return chunks[-1]["usage"]["completion_tokens"], seconds, chunks[-2]["args"]["tokens_per_s"], text


def in_process(engine: Engine, prompt: str, settings: DecodingSettings) -> tuple[int, float, float, str]:
    start = time.perf_counter()
    done = engine.generate(prompt, settings)
    return len(done.tokens), time.perf_counter() - start, done.tokens_per_s, done.text


def parse_args(argv):
    """The options, checked as far as the input alone shows (one line, before anything loads)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=128, help="max tokens per reply (default 128)")
    ap.add_argument("--k", type=int, default=10, help="ARGS candidates per step (default 10)")
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions after a warm-up (default 5)")
    add_model_options(ap)
    add_objective_option(ap)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = ap.parse_args(argv)
    if args.tokens < 1 or args.reps < 1:  # --reps 0: a division by zero once both sides had loaded
        raise UserError(f"--tokens and --reps must be at least 1 (got {args.tokens} and {args.reps})")
    settings = DecodingSettings(mode="args-greedy", k=args.k, w=1.5, max_new_tokens=args.tokens,
                                objectives=objectives_from(args)).validated()
    check_model_options(args)
    if args.tokens >= args.n_ctx:  # as check_reply_room, but named as this tool's option
        raise UserError(f"--tokens {args.tokens} leaves no room for the prompt in the {args.n_ctx}-token context; "
                        "lower it or raise --n-ctx")
    check_reward_files(args.reward, settings.objectives, guiding=True)
    check_gguf_file(args.policy or home.default_policy(), "policy model")
    return args, settings


def main(argv=None) -> int:
    try:
        args, settings = parse_args(argv)
    except UserError as e:
        print(f"error: {as_options(str(e))}", file=sys.stderr)  # named as its options
        return 2
    threads, rm_threads = args.threads or default_threads(), args.rm_threads or default_rm_threads()
    print(f"loading the models in-process and starting the server ({threads} llama.cpp thread(s), "
          f"{rm_threads} onnxruntime thread(s))", file=sys.stderr)
    engine = Engine.load(args.policy, args.reward, n_ctx=args.n_ctx, threads=args.threads, rm_threads=args.rm_threads,
                         n_gpu_layers=args.n_gpu_layers)
    proc, address = start_server(args, settings)
    try:
        with httpx.Client(base_url=f"http://{address}", timeout=600) as client:
            sides = {"in-process": lambda p: in_process(engine, p, settings),
                     "server": lambda p: through_server(client, p, args.tokens)}
            # CPU time spent per side (the server's: its whole process plus this client), a measure
            # that a busy neighbour disturbs far less than wall time
            cpu = {"in-process": lambda: time.process_time(),
                   "server": lambda: cpu_seconds(proc.pid) + time.process_time()}
            for run in sides.values():  # warm-up: first-call allocations, connection
                run(BENCH_PROMPTS[0])
            rates: dict[str, list[float]] = {name: [] for name in sides}
            decode_rates: dict[str, list[float]] = {name: [] for name in sides}
            counts: dict[str, list[int]] = {name: [] for name in sides}
            replies: dict[str, list[str]] = {}  # each side's last replies: the same settings give the same ones
            cpu_ms: dict[str, list[float]] = {name: [] for name in sides}
            for rep in range(args.reps):
                order = list(sides) if rep % 2 == 0 else list(reversed(sides))  # ABBA: drift hits both
                for name in order:
                    cpu_start = cpu[name]()
                    runs = [sides[name](prompt) for prompt in BENCH_PROMPTS]
                    n = sum(r[0] for r in runs)
                    cpu_ms[name].append((cpu[name]() - cpu_start) * 1000 / n)
                    rates[name].append(n / sum(r[1] for r in runs))
                    decode_rates[name].append(statistics.fmean(r[2] for r in runs))
                    counts[name].append(n)
                    replies[name] = [r[3] for r in runs]
                print(f"repetition {rep + 1}/{args.reps} done", file=sys.stderr)
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    result = {name: {"tokens_per_s": statistics.median(r), "tokens_per_s_min": min(r), "tokens_per_s_max": max(r),
                     "decode_tokens_per_s": statistics.median(decode_rates[name]),
                     "cpu_ms_per_token": statistics.median(cpu_ms[name])} for name, r in rates.items()}
    result = {"in_process": result["in-process"], "server": result["server"],
              "server_over_in_process": result["server"]["tokens_per_s"] / result["in-process"]["tokens_per_s"],
              "same_replies": replies["server"] == replies["in-process"],
              "settings": settings.to_dict(),
              "method": {"prompts": len(BENCH_PROMPTS), "max_tokens": args.tokens, "repetitions": args.reps,
                         "tokens_per_repetition": {side: counts[side][0] for side in counts}, "warmup": 1,
                         "how": "one streaming client; timed request to last token, prefill and final reward "
                                "score included on both sides; repetitions alternate ABBA between the sides"},
              "machine": {"cpu": llama_build.status()["cpu"], "cores": os.cpu_count(), "policy_threads": threads,
                          "rm_threads": rm_threads, "policy": str(engine.policy.info.path), "reward": engine.reward.name,
                          "reward_provider": engine.reward.provider, "load_average_end": os.getloadavg()[0]}}
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0


def table(r: dict) -> str:
    lines = [f"{name:10s}  {x['tokens_per_s']:6.1f} tokens/s  (median of {r['method']['repetitions']}, "
             f"{x['tokens_per_s_min']:.1f}-{x['tokens_per_s_max']:.1f}); decode steps alone "
             f"{x['decode_tokens_per_s']:.1f} tokens/s (the engine's own timer); CPU {x['cpu_ms_per_token']:.1f} ms/token"
             for name, x in (("in-process", r["in_process"]), ("server", r["server"]))]
    how, m = r["method"], r["machine"]
    return "\n".join(lines + [
        f"{'ratio':10s}  {r['server_over_in_process']:6.3f}x  server / in-process (target >= 0.95x)",
        f"- ARGS-greedy k={r['settings']['k']}, {how['prompts']} prompts x up to {how['max_tokens']} tokens "
        f"({how['tokens_per_repetition']['server']} tokens per repetition through the server, "
        f"{how['tokens_per_repetition']['in-process']} in-process), {how['how']}",
        ("- the two sides gave the same replies" if r["same_replies"] else "- WARNING: the server's replies differ "
         "from the in-process ones (other settings or models?): the two sides did not decode the same tokens"),
        f"- reward model {m['reward']} ({m['reward_provider']}), objectives "
        + (", ".join(f"{n} {w:g}" for n, w in r["settings"]["objectives"].items()) or "its defaults"),
        f"- machine: {m['cpu']}, {m['cores']} cores, llama.cpp {m['policy_threads']} thread(s), onnxruntime "
        f"{m['rm_threads']} thread(s), load {m['load_average_end']:.2f} at the end"])


if __name__ == "__main__":
    sys.exit(main())
