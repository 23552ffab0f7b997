"""Base class of every similarity loss: resolves the distance once."""

from typing import Any

from torch import nn

from quaterion.distances import Distance


class SimilarityLoss(nn.Module):
    """Base of all losses; holds the distance class picked by name.

    Args:
        distance_metric_name: a :class:`~quaterion.distances.Distance` member or its string
            value; resolved once into ``self.distance_metric`` (a distance class).

    Raises:
        ValueError: unknown distance name (the message lists the valid ones).
    """

    def __init__(self, distance_metric_name: Distance = Distance.COSINE):
        super().__init__()
        self.distance_metric = Distance.get_by_name(distance_metric_name)
        self.distance_metric_name = distance_metric_name

    def get_config_dict(self) -> dict[str, Any]:
        """JSON-serialisable constructor config: ``{"distance_metric_name": ...}``."""
        return {"distance_metric_name": self.distance_metric_name}

    def check_batch_targets(self, targets: dict) -> None:
        """Check a batch's targets (the collated ``labels``/``groups`` dict) on the host,
        before they move to the device, so the loss need not read them there.

        ``Quaterion.fit`` calls it for every training and validation batch. The default
        checks nothing; pair losses check scores against ``score_range``, classifier losses
        their class ids. The tensors it checked are marked, and the loss does not read them
        again.
        """
