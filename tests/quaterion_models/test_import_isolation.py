"""quaterion_models imports with torch and numpy only: no Lightning, quaterion, PML or gensim.

One subprocess (importing torch is the slow part) checks every module, then checks that the
fastText extra fails with an ImportError naming the pip extra when gensim is missing."""

import textwrap
from pathlib import Path

from tests._run import blocking_prelude, run_python

REPO_ROOT = Path(__file__).resolve().parents[2]

# The optional backbones and runtimes too: the encoder extras and the ONNX modules import
# them lazily, when an encoder is built or an export is loaded.
SCRIPT = blocking_prelude(
    "pytorch_lightning",
    "lightning",
    "quaterion",
    "pytorch_metric_learning",
    "gensim",
    "transformers",
    "sentence_transformers",
    "tokenizers",
    "torchvision",
    "onnx",
    "onnxruntime",
) + textwrap.dedent(
    """



    import quaterion_models
    SKIP = {"quaterion_models.encoders.extras.fasttext_encoder"}
    imported = []
    for info in pkgutil.walk_packages(quaterion_models.__path__, "quaterion_models."):
        if info.name in SKIP:
            continue
        importlib.import_module(info.name)
        imported.append(info.name)
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not leaked, leaked
    print("\\n".join(imported))
    try:  # the optional extra fails with an error naming the pip extra
        importlib.import_module("quaterion_models.encoders.extras.fasttext_encoder")
    except ImportError as err:
        print("EXTRA-ERROR:", err)
    """
)


def test_every_module_imports_without_training_stack():
    result = run_python("-c", SCRIPT)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    imported = {line for line in lines if not line.startswith("EXTRA-ERROR:")}
    expected = {
        "quaterion_models.model",
        "quaterion_models.types",
        "quaterion_models.encoders.encoder",
        "quaterion_models.encoders.switch_encoder",
        "quaterion_models.encoders.extras",
        "quaterion_models.heads.encoder_head",
        "quaterion_models.heads.empty_head",
        "quaterion_models.heads.gated_head",
        "quaterion_models.heads.sequential_head",
        "quaterion_models.heads.skip_connection_head",
        "quaterion_models.heads.softmax_head",
        "quaterion_models.heads.stacked_projection_head",
        "quaterion_models.heads.switch_head",
        "quaterion_models.heads.widening_head",
        "quaterion_models.modules.simple",
        "quaterion_models.utils.tensors",
        "quaterion_models.utils.classes",
        "quaterion_models.utils.meta",
        "quaterion_models.encoders.extras.transformer_encoder",
        "quaterion_models.encoders.extras.torchvision_encoder",
        "quaterion_models.onnx.export",
        "quaterion_models.onnx.runtime",
        "quaterion_models.onnx.text",
    }
    assert expected <= imported, expected - imported
    extra_error = [line for line in lines if line.startswith("EXTRA-ERROR:")]
    assert len(extra_error) == 1, "fasttext_encoder imported although gensim was blocked"
    assert "fasttext" in extra_error[0] and "pip install" in extra_error[0]


TORCH_FREE = blocking_prelude("torch") + textwrap.dedent(
    """
    import quaterion_models, quaterion_models.utils, quaterion_models.index
    import quaterion_models.onnx.runtime, quaterion_models.onnx.text
    assert "torch" not in sys.modules
    for name in ("SimilarityModel",):
        try:
            getattr(quaterion_models, name)
        except ImportError as err:
            print("NEEDS-TORCH:", name, err)
    """
)


def test_serving_modules_import_without_torch():
    """What a torch-free ONNX serving environment imports; SimilarityModel still needs torch."""
    result = run_python("-c", TORCH_FREE)
    assert result.returncode == 0, result.stderr
    assert "NEEDS-TORCH: SimilarityModel blocked import of torch" in result.stdout
