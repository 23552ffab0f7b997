"""Per-record choice of head, paired with :class:`~quaterion_models.encoders.SwitchEncoder`."""

import os
from typing import Any, Optional

import torch
from torch import Tensor

from quaterion_models.encoders.switch_encoder import inverse_permutation
from quaterion_models.heads.encoder_head import EncoderHead
from quaterion_models.utils._files import load_state_dict, read_json_dict, restore_subclass
from quaterion_models.utils.checks import check_options
from quaterion_models.utils.classes import save_class_import
from quaterion_models.utils.errors import DamagedFileError


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
        names = [record["encoder"] for record in meta]
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
        config_path = os.path.join(input_path, "config.json")
        config = read_json_dict(config_path, "the SwitchHead config written by save()")
        records = config.pop("heads", None)
        if not isinstance(records, dict) or not all(
            isinstance(record, dict) and isinstance(record.get("config"), dict)
            for record in records.values()
        ):
            raise DamagedFileError(
                f"{config_path} is damaged or not a SwitchHead config: expected "
                '{"heads": {key: {"config": {...}, "class": {...}}}, ...}; save the model again'
            )
        classes = {  # checked to be heads before anything is called
            key: restore_subclass(record.get("class"), EncoderHead, config_path)
            for key, record in records.items()
        }
        try:
            heads = {key: classes[key](**record["config"]) for key, record in records.items()}
            head = cls(options=heads, **config)
        except (TypeError, ValueError) as err:
            raise DamagedFileError(
                f"{config_path} is damaged or does not fit SwitchHead: {err}; save the model again"
            ) from err
        weights_path = os.path.join(input_path, "weights.bin")
        try:
            head.load_state_dict(load_state_dict(weights_path))
        except RuntimeError as err:
            raise DamagedFileError(
                f"{weights_path} does not fit the SwitchHead described by {config_path}: "
                f"{str(err).splitlines()[0]}; save the model again"
            ) from err
        return head
