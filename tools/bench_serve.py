"""Tokens/s through `args-local serve` (one streaming client) against the same generation in-process.

    python tools/bench_serve.py [--tokens 128] [--k 10] [--reps 5] [--threads N]

Both sides decode the same prompts with the same settings (ARGS-greedy, deterministic), so they
produce the same tokens; each is timed from request to last token as its user waits (prefill
and the reply's final reward score included on both sides). Runs alternate between the two, in
one run, so a busy neighbour slows both alike. The client reads the SSE lines with httpx and
parses only the last chunks, to charge the server, not a client library, for the stream.
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

from args_local import llama_build  # noqa: E402
from args_local.bench import BENCH_PROMPTS  # noqa: E402
from args_local.cpu import default_threads  # noqa: E402
from args_local.engine import Engine  # noqa: E402
from args_local.errors import UserError  # noqa: E402
from args_local.settings import DecodingSettings  # noqa: E402


def start_server(threads: int, settings: DecodingSettings) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "args_local.cli", "serve", "--port", "0", "--threads", str(threads),
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


def through_server(client: httpx.Client, prompt: str, tokens: int) -> tuple[int, float, float]:
    """(tokens, seconds from request to last token, the engine's own decode-only tokens/s)."""
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
    finish, usage = json.loads(data[-2][6:]), json.loads(data[-1][6:])
    return usage["usage"]["completion_tokens"], seconds, finish["args"]["tokens_per_s"]


def in_process(engine: Engine, prompt: str, settings: DecodingSettings) -> tuple[int, float, float]:
    start = time.perf_counter()
    done = engine.generate(prompt, settings)
    return len(done.tokens), time.perf_counter() - start, done.tokens_per_s


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=128, help="max tokens per reply (default 128)")
    ap.add_argument("--k", type=int, default=10, help="ARGS candidates per step (default 10)")
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions after a warm-up (default 5)")
    ap.add_argument("--threads", type=int, default=default_threads(), help="llama.cpp threads, both sides")
    args = ap.parse_args(argv)
    try:  # one line before anything loads: a UserError's traceback, or a division by zero after the loads
        if args.reps < 1 or args.threads < 1:
            raise UserError(f"--reps and --threads must be at least 1 (got {args.reps} and {args.threads})")
        settings = DecodingSettings(mode="args-greedy", k=args.k, w=1.5, max_new_tokens=args.tokens).validated()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    print(f"loading the models in-process and starting the server ({args.threads} llama.cpp thread(s))",
          file=sys.stderr)
    engine = Engine.load(threads=args.threads)
    proc, address = start_server(args.threads, settings)
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
                print(f"repetition {rep + 1}/{args.reps} done", file=sys.stderr)
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    assert counts["in-process"] == counts["server"], f"the two sides decoded different lengths: {counts}"
    median = {name: statistics.median(r) for name, r in rates.items()}
    for name, r in rates.items():
        print(f"{name:10s}  {median[name]:6.1f} tokens/s  (median of {args.reps}, {min(r):.1f}-{max(r):.1f}); "
              f"decode steps alone {statistics.median(decode_rates[name]):.1f} tokens/s (the engine's own timer); "
              f"CPU {statistics.median(cpu_ms[name]):.1f} ms/token")
    print(f"{'ratio':10s}  {median['server'] / median['in-process']:6.3f}x  server / in-process (target >= 0.95x)")
    print(f"- ARGS-greedy k={args.k}, {len(BENCH_PROMPTS)} prompts x up to {args.tokens} tokens "
          f"({counts['server'][0]} tokens per repetition), one streaming client; timed request to last token, "
          f"prefill and final reward score included on both sides")
    print(f"- machine: {llama_build.status()['cpu']}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
