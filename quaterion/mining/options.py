"""The controls of hard-negative mining, checked once: :class:`MiningOptions`."""

import math
from typing import NamedTuple, Optional

SAMPLING = ("top", "random")


class MiningOptions(NamedTuple):
    """What makes a corpus item a mined negative of a query (see :func:`mine_hard_negatives`).

    Candidates of a query are the corpus items that are neither its positives nor itself,
    ranked by similarity (highest first). Candidates closer than a margin or outside
    ``[min_score, max_score]`` are dropped; the survivors' ranks ``range_min ..
    range_max - 1`` form the window; ``sampling="top"`` keeps the first ``num_negatives`` of
    the window, ``"random"`` draws ``num_negatives`` of it uniformly (seeded).
    """

    num_negatives: int = 3
    range_min: int = 0
    range_max: Optional[int] = None
    absolute_margin: Optional[float] = None
    relative_margin: Optional[float] = None
    max_score: Optional[float] = None
    min_score: Optional[float] = None
    sampling: str = "top"
    seed: int = 0

    @property
    def uses_positive_score(self) -> bool:
        """Whether a margin needs each query's positive score."""
        return self.absolute_margin is not None or self.relative_margin is not None

    @property
    def filters(self) -> bool:
        """Whether any score filter (margin or bound) is set."""
        return self.uses_positive_score or self.max_score is not None or self.min_score is not None

    @property
    def window_end(self) -> int:
        """Survivor ranks read per query: ``range_min + num_negatives`` for ``"top"``,
        ``range_max`` for ``"random"`` (``range_max=None`` means unbounded for ``"top"``)."""
        top_end = self.range_min + self.num_negatives
        if self.range_max is None:
            return top_end if self.sampling == "top" else self.default_range_max
        return min(top_end, self.range_max) if self.sampling == "top" else self.range_max

    @property
    def default_range_max(self) -> int:
        """``range_max`` used by ``"random"`` when none is given: ten candidates per negative
        with a filter set, else ``num_negatives`` (the window equals the top ones)."""
        return self.range_min + self.num_negatives * (10 if self.filters else 1)


def check_options(options: MiningOptions) -> MiningOptions:
    """``options`` if every field is valid, else a ``ValueError``/``TypeError`` naming it."""
    for name in ("num_negatives", "range_min", "seed"):
        value = getattr(options, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}.")
    if options.num_negatives < 1:
        raise ValueError(f"num_negatives must be >= 1, got {options.num_negatives}.")
    if options.range_min < 0:
        raise ValueError(f"range_min must be >= 0, got {options.range_min}.")
    if options.range_max is not None:
        if isinstance(options.range_max, bool) or not isinstance(options.range_max, int):
            raise TypeError(f"range_max must be an int or None, got {options.range_max!r}.")
        if options.range_max - options.range_min < options.num_negatives:
            raise ValueError(
                f"The rank window range_min={options.range_min} .. range_max="
                f"{options.range_max} holds {max(options.range_max - options.range_min, 0)} "
                f"candidates, fewer than num_negatives={options.num_negatives}: raise range_max, "
                "lower range_min or ask for fewer negatives."
            )
    if options.sampling not in SAMPLING:
        raise ValueError(f"sampling must be one of {SAMPLING}, got {options.sampling!r}.")
    for name in ("absolute_margin", "relative_margin", "max_score", "min_score"):
        value = getattr(options, name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a float or None, got {value!r}.")
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}.")
    if options.relative_margin is not None and options.relative_margin < 0:
        raise ValueError(f"relative_margin must be >= 0, got {options.relative_margin}.")
    if (
        options.max_score is not None
        and options.min_score is not None
        and options.min_score > options.max_score
    ):
        raise ValueError(
            f"min_score={options.min_score} is above max_score={options.max_score}: "
            "no candidate could pass."
        )
    return options
