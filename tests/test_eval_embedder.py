"""The MiniLM sentence embedder behind the coherence metric (needs it built: see embedder_build.py)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from args_local import home
from args_local.errors import UserError
from args_local.evaluation.embedder import SentenceEmbedder
from args_local.export.common import is_earlier_export

ROOT = Path(__file__).resolve().parents[1]
built = pytest.mark.skipif(not (home.default_sentence_embedder() / "manifest.json").is_file(),
                           reason="sentence embedder not built (python tools/build_default_models.py --only embedder)")


@built
def test_related_texts_are_closer_than_unrelated():
    v = SentenceEmbedder().embed(["How do I bake bread?", "Knead the dough, let it rise, then bake it.",
                                  "The central bank raised interest rates."])
    assert v.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-6)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


@built
def test_runtime_needs_no_torch_or_transformers():
    code = ("import sys; from args_local.evaluation.embedder import SentenceEmbedder; "
            "SentenceEmbedder().embed(['hello']); "
            "bad = [m for m in ('torch', 'transformers', 'optimum') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


@built
def test_a_copy_of_the_built_embedder_is_an_earlier_export_that_force_may_replace(tmp_path):
    copy = tmp_path / "embedder"
    copy.mkdir()
    shutil.copy(home.default_sentence_embedder() / "manifest.json", copy)
    assert is_earlier_export(copy)  # the kind embedder_build writes is the one export reads


def test_missing_embedder_says_how_to_build_it(tmp_path):
    with pytest.raises(UserError, match="tools/setup.sh builds it"):
        SentenceEmbedder(tmp_path)
