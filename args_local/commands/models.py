"""args-local models — what is installed, where, and how well it was validated."""

from __future__ import annotations

import json
from pathlib import Path

from .. import home, llama_build
from ..errors import UserError
from ..evaluation.embedder import read_embedder_manifest
from ..policy import check_gguf_file, check_gguf_loads
from ..reward.gates import gate_specs, gate_threshold, load_gates
from ..reward.heads import Heads, default_weights, head_ramps, head_specs
from ..reward.manifest import MANIFEST, built_in_hint, precision_of, read_manifest, validation_summary


def register(sub) -> None:
    p = sub.add_parser("models", help="list the installed models", description="List the models args-local can use.")
    p.add_argument("--json", action="store_true", help="print the list as one JSON object")
    p.set_defaults(run=run)


def described(m: dict, directory) -> dict:
    """What `models` shows of a manifest, each value and head file checked as loading checks it (UserError if not)."""
    specs = head_specs(m) if m["kind"] != "encoder" else {m.get("objective") or "reward": {}}
    names = tuple(specs)
    if m["kind"] != "encoder":  # small .npz files: a damaged one is found here, not at the next load
        hidden_size = (m.get("graph") or {}).get("hidden_size")
        with built_in_hint(directory):
            Heads.load(directory, m, hidden_size)
            load_gates(directory, m, names, hidden_size)
    warmup, delay = head_ramps(m, names)
    return {"kind": m["kind"], "precision": precision_of(m), "validation": m.get("validation"),
            "objectives": default_weights(m, names),
            "warmup_tokens": {n: w for n, w in zip(names, warmup.tolist()) if w},
            "delay_tokens": {n: d for n, d in zip(names, delay.tolist()) if d},
            "gates": {name: gate_threshold(gate) for name, gate in gate_specs(m).items()}}


def exported_models() -> list[Path]:
    """Models the user exported into the models folder (export --out there): its other folders with a manifest.json."""
    folders = sorted(home.models_dir().iterdir()) if home.models_dir().is_dir() else []
    return [f for f in folders if (f / MANIFEST).is_file() and not home.is_built_in_folder(f)
            and not f.name.startswith(".")]  # an export being built (.NAME.partial-*: common.staged_output)


def reward_row(role: str, path: Path) -> dict:
    row = {"role": role, "path": str(path), "present": (path / MANIFEST).is_file()}
    if row["present"]:
        row["size_mb"] = round(sum(f.stat().st_size for f in path.iterdir() if f.is_file()) / 1e6, 1)
        try:
            row.update(described(read_manifest(path), path))
        except UserError as e:  # listed as damaged, the others still listed
            row["problem"] = str(e)
    return row


def objective_lines(r: dict) -> list[str]:
    """described()'s objectives, warm-ups, delays and gates in words (models, and export's summary)."""
    lines = []
    if r.get("objectives"):
        lines.append("objectives (default weights): " + ", ".join(f"{n}={w:g}" for n, w in r["objectives"].items()))
    if r.get("warmup_tokens"):
        lines.append("each reward ramps in over the reply's first tokens: "
                     + ", ".join(f"{name} {n:g}" for name, n in r["warmup_tokens"].items()))
    if r.get("delay_tokens"):
        lines.append("rewards left out of the reply's first tokens: "
                     + ", ".join(f"{name} {n:g}" for name, n in r["delay_tokens"].items()))
    for name, threshold in (r.get("gates") or {}).items():  # reward/gates.py
        how = "times its p" if threshold is None else f"on where its p >= {threshold}, off below"
        lines.append(f"{name} weight gated by the last user message: {how}")
    return lines


def run(args) -> int:
    rows = []
    policy = home.default_policy()
    rows.append({"role": "policy (default)", "path": str(policy), "present": policy.is_file(),
                 "size_mb": round(policy.stat().st_size / 1e6, 1) if policy.is_file() else None})
    if policy.is_file():
        try:
            check_gguf_loads(check_gguf_file(policy, "policy model"))
        except UserError as e:  # e.g. a download cut off: listed as damaged, not as a working gguf
            rows[-1]["problem"] = str(e)
    for role, path in (("guide RM (default)", home.default_reward()), ("encoder RM", home.default_encoder_reward()),
                       ("judge RM", home.default_judge())):
        rows.append(reward_row(role, path))
    embedder = home.default_sentence_embedder()  # eval's coherence
    row = {"role": "embedder (eval)", "path": str(embedder), "present": (embedder / MANIFEST).is_file()}
    if row["present"]:
        row["size_mb"] = round(sum(f.stat().st_size for f in embedder.iterdir() if f.is_file()) / 1e6, 1)
        row["kind"] = "sentence embedder"
        try:
            read_embedder_manifest(embedder)
        except UserError as e:
            row["problem"] = str(e)
    rows.append(row)
    rows += [{**reward_row("exported RM", path), "exported": True} for path in exported_models()]
    build = llama_build.status()
    if args.json:
        print(json.dumps({"models_dir": str(home.models_dir()), "models": rows, "llama_cpp": build}, indent=2))
        return 0
    print(f"models directory: {home.models_dir()}  (set ARGS_LOCAL_HOME to move it)")
    for r in rows:
        kind = ", ".join(filter(None, (r.get("kind") or "gguf", r.get("precision"))))
        state = f"{kind}, {r['size_mb']} MB" if r["present"] else "missing — run tools/setup.sh"
        if r.get("problem"):
            state = "damaged — export it again" if r.get("exported") else "damaged — run tools/setup.sh"
        print(f"  {r['role']:<20} {state:<28} {r['path']}")
        if r.get("problem"):
            print(f"  {'':<20} {r['problem']}")
        for line in objective_lines(r):
            print(f"  {'':<20} {line}")
        if r.get("exported") and r.get("validation"):  # the built-in models' are known; a user's export's are news
            print(f"  {'':<20} validated: {validation_summary(r['validation'])}")
        int8 = (r.get("validation") or {}).get("int8") or {}
        if int8.get("way"):  # the export tried several ways and kept the fastest that ranks like fp32
            print(f"  {'':<20} int8 {int8['way']}, chosen on this CPU: " + ", ".join(
                f"{way} {t['ms_per_step']:.1f} ms per step ({t['ranking_agreement']:.1%} ranked as fp32)"
                for way, t in int8["tried"].items()))
        if int8.get("smoothing"):  # export/smoothing.py
            layers = ", ".join(str(i) for i in int8["smoothing"]["weight_only_down_layers"]) or "none"
            print(f"  {'':<20} int8 smoothed first (SmoothQuant, alpha {int8['smoothing']['alpha']:g}); "
                  f"layers whose down projection stays weight-only: {layers}")
    print(f"llama.cpp on {build['cpu']} ({build['amx']}):")
    compared = build["compared"] or []
    if not compared:
        print("  not checked on this machine yet: tools/setup.sh (or the first model load) checks it")
    for c in compared:
        chosen = c["variant"] == build["recorded_variant"] and c["extra_bufts"] == build["extra_bufts"]
        print(f"  {'using' if chosen else 'tried'}: {llama_build.describe(c)}")
    if compared and not build["record_current"]:
        print("  NOT checked with the llama.cpp now installed or on this CPU: run tools/setup.sh")
    if compared:
        print(f"  features: {build['system_info']}")
    return 0
