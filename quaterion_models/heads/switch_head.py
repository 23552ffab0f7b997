"""Per-record choice of head, paired with :class:`~quaterion_models.encoders.SwitchEncoder`."""

import os
from collections.abc import Mapping
from typing import Any, Optional

import torch
from torch import Tensor

from quaterion_models.encoders.switch_encoder import inverse_permutation
from quaterion_models.heads.encoder_head import EncoderHead, build_checked
from quaterion_models.utils.checks import check_options
from quaterion_models.utils.classes import save_class_import
from quaterion_models.utils.config import ConfigFile
from quaterion_models.utils.files import load_state_dict


class SwitchHead(EncoderHead):
    """Transform each row with the option named by its meta ``{"encoder": key}``.

    Options' ``transform`` is used (their dropout is not applied); rows keep their order.
    ``(B, D_in) -> (B, output_size)``. State dict: ``<key>.<param>``.

    Args:
        options: ``{key: head}``; the output size is the first option's.
        input_embedding_size: ``D_in``.
        **kwargs: forwarded to the base (``dropout`` is fixed to ``0.0`` and may not be passed).
    """

    def __init__(self, options: dict[str, EncoderHead], input_embedding_size: int, **kwargs):
        super().__init__(input_embedding_size, dropout=0.0, **kwargs)
        check_options("SwitchHead", options, EncoderHead, "pass one head per SwitchEncoder option")
        self.options = options
        for key, head in options.items():
            self.add_module(key, head)
        _check_output_sizes(options)

    @property
    def output_size(self) -> int:
        """``output_size`` of the first option."""
        return next(iter(self.options.values())).output_size

    def transform(self, input_vectors: Tensor) -> Tensor:
        """Not meaningful without meta: use :meth:`forward`."""
        raise NotImplementedError(
            "SwitchHead.transform is not implemented: call forward(input_vectors, meta) so "
            "each row can be routed by meta[i]['encoder']"
        )

    def forward(self, input_vectors: Tensor, meta: Optional[list[Any]] = None) -> Tensor:
        """Route row ``i`` to ``options[meta[i]["encoder"]].transform``; keep row order."""
        if meta is None:
            raise ValueError(
                "SwitchHead.forward: `meta` is required (one dict {'encoder': key} per row), "
                "got None; use a SwitchEncoder, whose meta extractor provides it"
            )
        x = self.dropout(input_vectors)
        names = [_encoder_name(index, record) for index, record in enumerate(meta)]
        unknown = set(names) - set(self.options)
        if unknown or len(names) != x.shape[0]:
            raise ValueError(
                f"SwitchHead.forward: `meta` must name one of {sorted(self.options)} for each "
                f"of the {x.shape[0]} rows, got {len(names)} entries with unknown {sorted(unknown)}"
            )
        outputs, positions = [], []
        for key, head in self.options.items():
            rows = [index for index, name in enumerate(names) if name == key]
            if rows:
                outputs.append(head.transform(x[torch.tensor(rows, device=x.device)]))
                positions.extend(rows)
        if not outputs:  # empty batch
            return x.new_empty((0, self.output_size))
        order = inverse_permutation(torch.tensor(positions, dtype=torch.long, device=x.device))
        return torch.cat(outputs, dim=0)[order]

    def get_config_dict(self) -> dict:
        """``{"heads": {key: {"config", "class"}}, "input_embedding_size": n}``."""
        return {
            "heads": {
                key: {"config": head.get_config_dict(), "class": save_class_import(head)}
                for key, head in self.options.items()
            },
            "input_embedding_size": self.input_embedding_size,
        }

    @classmethod
    def load(cls, input_path: str) -> "SwitchHead":
        """Rebuild options from their configs (constructors), then load the weights safely."""
        config = ConfigFile.read(
            os.path.join(input_path, "config.json"), "the SwitchHead config written by save()"
        )
        records = config.mapping("heads")
        options = {}  # checked to be heads before anything is called
        for key, record in records.items():
            entry = ConfigFile(
                config.path, config.check(record, (dict,), f"heads.{key}"), config.what
            )
            kwargs = entry.mapping("config", non_empty=False, label=f"heads.{key}.config")
            if kwargs.get("input_embedding_size") is not None:
                ConfigFile(config.path, kwargs, config.what).integer(
                    "input_embedding_size", label=f"heads.{key}.config.input_embedding_size"
                )
            head_cls = config.class_record(
                entry.get("class", (dict,)), EncoderHead, f"heads.{key}.class"
            )
            options[key] = (head_cls, kwargs)
        config.integer("input_embedding_size")
        rest = {name: value for name, value in config.data.items() if name != "heads"}
        weights_path = os.path.join(input_path, "weights.bin")
        state = load_state_dict(weights_path)

        def build() -> SwitchHead:
            heads = {key: head_cls(**kwargs) for key, (head_cls, kwargs) in options.items()}
            return cls(options=heads, **rest)

        return build_checked(cls, build, config, state, weights_path)


def _check_output_sizes(options: dict[str, EncoderHead]) -> None:
    """Every option returns rows of one width (else a batch's rows could not be joined)."""
    try:
        sizes = {key: head.output_size for key, head in options.items()}
    except NotImplementedError:  # reported when the head is used
        return
    if len(set(sizes.values())) > 1:
        raise ValueError(
            f"SwitchHead: every option must have the same output_size, got {sizes}; build the "
            "options for one output width"
        )


def _encoder_name(index: int, record: Any) -> Any:
    """``record["encoder"]``, or a ``ValueError`` naming the row."""
    if not isinstance(record, Mapping) or "encoder" not in record:
        raise ValueError(
            f"SwitchHead.forward: meta of row {index} must be a dict {{'encoder': key}}, got "
            f"{record!r:.80}; use a SwitchEncoder, whose meta extractor provides it"
        )
    return record["encoder"]
