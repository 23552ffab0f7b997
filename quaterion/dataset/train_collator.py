"""TrainCollator: the ``collate_fn`` training installs on a similarity data loader."""

from typing import Any, Callable, Dict, Hashable, List, Optional, Sequence, Tuple

from quaterion_models.types import CollateFnType, MetaExtractorFnType
from quaterion_models.utils.meta import merge_meta


class TrainCollator:
    """Turns a list of ``(id, sample)`` into ``(features, labels)`` for the training step.

    ``features = {"data": {encoder key: that encoder's collate output},
    "meta": [one merged meta dict per object]}``; ``labels`` is the loader's label dict
    (``{"groups": int64 (n,)}`` or ``{"pairs": int64 (n, 2), "labels": float (n,),
    "subgroups": float (2n,)}``). Picklable as long as its three callables are.

    Args:
        pre_collate_fn: ``List[(id, sample)] -> (feature_ids, features, labels)``, normally
            the loader's ``original_params["collate_fn"]``.
        encoder_collates: encoder key -> collate function of that encoder.
        meta_extractors: encoder key -> meta extractor of that encoder.
    """

    def __init__(
        self,
        pre_collate_fn: Callable,
        encoder_collates: Dict[str, CollateFnType],
        meta_extractors: Dict[str, MetaExtractorFnType],
    ):
        if not callable(pre_collate_fn):
            raise TypeError(
                f"pre_collate_fn must be callable, got {type(pre_collate_fn).__name__}; pass the "
                "loader's original_params['collate_fn']."
            )
        if set(encoder_collates) != set(meta_extractors):
            raise ValueError(
                f"encoder_collates and meta_extractors must name the same encoders, got "
                f"{sorted(encoder_collates)} and {sorted(meta_extractors)}; give one collate and "
                "one meta extractor per encoder key."
            )
        self.pre_collate_fn = pre_collate_fn
        self.encoder_collates = encoder_collates
        self.meta_extractors = meta_extractors

    def pre_encoder_collate(
        self,
        features: List[Any],
        ids: Optional[Sequence[Hashable]] = None,
        encoder_name: Optional[str] = None,
    ) -> Any:
        """Hook run before each encoder's collate; returns ``features`` unchanged here."""
        return features

    def process_meta(self, meta: Dict[str, List[dict]]) -> Any:
        """Hook combining per-encoder meta lists; default: one merged dict per object."""
        return merge_meta(meta)

    def collated_encoders(self) -> List[str]:
        """Hook naming the encoders a batch carries inputs for; default: every encoder."""
        return list(self.encoder_collates)

    def __call__(self, batch: List[Tuple[int, Any]]) -> Tuple[Dict[str, Any], Any]:
        ids, features, labels = self.pre_collate_fn(batch)
        data: Dict[str, Any] = {}
        meta: Dict[str, List[dict]] = {}
        for name in self.collated_encoders():
            encoder_features = self.pre_encoder_collate(features, ids, name)
            data[name] = self.encoder_collates[name](encoder_features)
            meta[name] = self.meta_extractors[name](encoder_features)
        return {"data": data, "meta": self.process_meta(meta)}, labels
