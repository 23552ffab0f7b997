"""Export a ``SimilarityModel`` to ONNX: the head always, the whole model when every encoder
can be traced (:class:`~quaterion_models.onnx.exportable.OnnxExportable`).

Layout of the export directory (written atomically)::

    config.json              format, sizes, fingerprint, graph files, preprocessing
    head.onnx                embeddings (B, head input) -> (B, output_size)
    model.onnx               encoder inputs -> (B, output_size)   (traceable encoders only)
    encoders/<key>/...       what the runtime needs to build inputs (tokenizer.json)
"""

import os
import warnings
from typing import Any

import torch
from torch import Tensor, nn

from quaterion_models.index.fingerprint import model_description, servable_fingerprint
from quaterion_models.model import SimilarityModel
from quaterion_models.onnx import layout
from quaterion_models.onnx.exportable import OnnxExportable
from quaterion_models.utils.batch_checks import check_head_output, dtype_mismatch, module_dtype
from quaterion_models.utils.files import atomic_directory, write_json
from quaterion_models.utils.tensors import check_materialised, move_to_device

DEFAULT_OPSET = 17


class HeadGraph(nn.Module):
    """The head alone, without meta: ``(B, D_in)`` -> ``(B, D_out)``."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    def forward(self, embeddings: Tensor) -> Tensor:
        return self.head(embeddings, meta=None)


class EndToEndGraph(nn.Module):
    """Every encoder's tensors (sorted by key, each encoder's inputs in its order) -> head."""

    def __init__(self, model: SimilarityModel, layout_: "list[tuple[str, int]]"):
        super().__init__()
        self.model = model
        self.layout = layout_

    def forward(self, *inputs: Tensor) -> Tensor:
        parts, start = [], 0
        for key, count in self.layout:
            encoder = self.model.encoders[key]
            parts.append(encoder.onnx_forward(*inputs[start : start + count]))
            start += count
        return self.model.head(torch.cat(parts, dim=1), meta=None)


def _trace(module: nn.Module, inputs: tuple, path: str, names: list, axes: dict, opset: int):
    # eval before export: the exporter restores the wrapper's mode afterwards, recursively
    module.eval()
    with warnings.catch_warnings():
        # torch 2.9+ flags the TorchScript exporter as legacy; it needs no extra packages
        # (the dynamo exporter needs onnxscript) and traces these graphs exactly.
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        # Gather over index tensors: wrong only for negative indices; verify() below compares
        # the graph's outputs with torch's, so a wrong graph is never written.
        warnings.filterwarnings("ignore", message=r".*aten::index operator of advanced indexing.*")
        torch.onnx.export(
            module,
            inputs,
            path,
            dynamo=False,
            input_names=names,
            output_names=[layout.OUTPUT],
            dynamic_axes={**axes, layout.OUTPUT: {0: "batch"}},
            opset_version=opset,
        )
    _verify(module, inputs, path, names)


def _verify(module: nn.Module, inputs: tuple, path: str, names: list) -> None:
    """Run the written graph with ONNX Runtime (when installed) on the example inputs and
    compare with torch; ``RuntimeError`` if they differ by more than float noise."""
    try:
        import onnxruntime
    except ImportError:
        return
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feeds = {name: tensor.detach().cpu().numpy() for name, tensor in zip(names, inputs)}
    got = session.run([layout.OUTPUT], feeds)[0]
    with torch.no_grad():
        expected = module(*inputs).detach().float().cpu().numpy()
    scale = max(1.0, float(abs(expected).max(initial=0.0)))
    if got.shape != expected.shape or float(abs(got - expected).max(initial=0.0)) > 1e-4 * scale:
        raise RuntimeError(
            f"export_onnx: the exported graph {os.path.basename(path)} does not reproduce the "
            "torch model on the example inputs (an operator was traced wrongly); nothing was "
            "written. Report the model's layers, or use the torch servable"
        )


def _check_model(model: Any, opset_version: int) -> None:
    if not isinstance(model, SimilarityModel):
        raise TypeError(
            f"export_onnx: `model` must be a SimilarityModel, got {type(model).__name__}; "
            "for a TrainableModel pass trainable_model.model"
        )
    if model.head is None:
        raise ValueError("export_onnx: the model has no head (head=None); build it with a head")
    if isinstance(opset_version, bool) or not isinstance(opset_version, int) or opset_version < 14:
        raise ValueError(
            f"export_onnx: `opset_version` must be an int >= 14, got {opset_version!r}"
        )
    check_materialised(model, "export_onnx")


def export_onnx(
    model: SimilarityModel, output_path: str, opset_version: int = DEFAULT_OPSET
) -> dict:
    """Write ``model`` as ONNX graphs into the directory ``output_path`` (replaced atomically).

    The head is always exported (``head.onnx``, input: the concatenated encoder embeddings).
    When every encoder implements :class:`~quaterion_models.onnx.exportable.OnnxExportable`
    (``TransformerEncoder``, ``TorchvisionEncoder``), the whole model is traced into
    ``model.onnx`` and each encoder's preprocessing (a tokenizer) is saved beside it. Load
    the result with :class:`~quaterion_models.onnx.runtime.OnnxSimilarityModel`.

    Args:
        model: the servable; it is put in eval mode.
        output_path: export directory (created; a previous export there is replaced, a
            torch servable saved there is not: export beside it).
        opset_version: ONNX opset (>= 14).

    Returns:
        the written ``config.json`` content.

    Raises:
        TypeError: ``model`` is not a ``SimilarityModel``, or its head cannot run in float32
            (a float64 / float16 / bfloat16 model: export ``copy.deepcopy(model).float()``).
        ValueError: the head needs per-record meta (``SwitchHead``), so it cannot be traced;
            or a parameter is on the meta device (no values).
        FileExistsError: ``output_path`` holds something else than an export (a servable
            written by ``SimilarityModel.save``) with the files an export writes.
    """
    _check_model(model, opset_version)
    model.eval()
    device = next(model.parameters(), torch.empty(0)).device
    head_input = SimilarityModel.get_encoders_output_size(model.encoders)
    example = torch.randn(2, head_input, device=device)
    try:
        with torch.no_grad():
            head_output = HeadGraph(model.head)(example)
    except Exception as err:
        if dtype_mismatch(err, "", example, model.head) is not None:
            raise _not_float32(f"the head {type(model.head).__name__}", model.head) from err
        raise ValueError(
            f"export_onnx: the head {type(model.head).__name__} cannot run without per-record "
            f"meta ({type(err).__name__}: {err}); heads that route records by meta "
            "(SwitchHead) cannot be exported to ONNX"
        ) from err
    check_head_output(model.head, head_output, head_input)  # config records output_size
    keys = sorted(model.encoders)
    traceable = all(isinstance(model.encoders[key], OnnxExportable) for key in keys)
    config = {
        "format": layout.FORMAT,
        "fingerprint": servable_fingerprint(model),
        "description": model_description(model),
        "head_input_size": head_input,
        "output_size": int(head_output.shape[-1]),  # the real width (see check_head_output)
        "head": layout.HEAD_FILE,
        "end_to_end": layout.END_TO_END_FILE if traceable else None,
        "encoders": [],
        "opset_version": opset_version,
    }
    with atomic_directory(output_path, layout.EXPORT) as tmp:
        _trace(
            HeadGraph(model.head),
            (example,),
            os.path.join(tmp, layout.HEAD_FILE),
            [layout.HEAD_INPUT],
            {layout.HEAD_INPUT: {0: "batch"}},
            opset_version,
        )
        if traceable:
            config["encoders"] = _export_end_to_end(model, keys, tmp, device, opset_version)
        write_json(os.path.join(tmp, layout.CONFIG_FILE), config)
    return config


def _export_end_to_end(
    model: SimilarityModel, keys: list, tmp: Any, device: torch.device, opset: int
) -> list:
    inputs, names, axes, plan, records = [], [], {}, [], []
    for key in keys:
        encoder = model.encoders[key]
        example = move_to_device(encoder.onnx_example_inputs(), device)
        encoder_dir = os.path.join(tmp, layout.ENCODERS_DIR, key)
        os.makedirs(encoder_dir, exist_ok=True)
        preprocessing = encoder.save_onnx_preprocessing(encoder_dir)
        if list(preprocessing["inputs"]) != list(example):
            raise ValueError(
                f"export_onnx: encoder {key!r} ({type(encoder).__name__}) declares inputs "
                f"{preprocessing['inputs']} but its example has {list(example)}"
            )
        for name, tensor in example.items():
            inputs.append(tensor)
            names.append(layout.input_name(key, name))
        for name, dims in encoder.onnx_dynamic_axes().items():
            # only the batch axis is shared: two encoders' token counts differ
            axes[layout.input_name(key, name)] = {
                axis: dim if dim == "batch" else f"{key}.{dim}" for axis, dim in dims.items()
            }
        plan.append((key, len(example)))
        records.append({"key": key, "preprocessing": preprocessing})
    try:
        _trace(
            EndToEndGraph(model, plan),
            tuple(inputs),
            os.path.join(tmp, layout.END_TO_END_FILE),
            names,
            axes,
            opset,
        )
    except Exception as err:
        for key in keys:  # float inputs (images) into an encoder of another dtype
            encoder = model.encoders[key]
            if dtype_mismatch(err, "", inputs, encoder) is not None:
                raise _not_float32(f"encoder {key!r} ({type(encoder).__name__})", encoder) from err
        raise
    return records


def _not_float32(what: str, module: nn.Module) -> TypeError:
    return TypeError(
        f"export_onnx: ONNX exports run in float32 but {what} has {module_dtype(module)} "
        "parameters; export a float32 copy: copy.deepcopy(model).float().export_onnx(path)"
    )
