"""Held-out retrieval quality for the example scripts (imports the training stack lazily)."""

import sys
from typing import Any, Optional


def r_precision(
    model: Any, samples: Any, batch_size: int = 64, progress: Optional[bool] = False
) -> float:
    """``RetrievalRPrecision`` of a ``SimilarityModel`` over group samples, every one a query.

    Args:
        model: the ``SimilarityModel`` to evaluate.
        samples: ``SimilarityGroupSample`` items (a list or a map-style dataset).
        batch_size: encoding batch size.
        progress: show a progress bar while encoding; ``None``: only on a terminal (in a
            log file the bar's final state would print twice).
    """
    if progress is None:
        progress = sys.stderr.isatty()
    from quaterion import Quaterion
    from quaterion.eval.evaluator import Evaluator
    from quaterion.eval.group import RetrievalRPrecision
    from quaterion.eval.samplers.group_sampler import GroupSampler

    evaluator = Evaluator(
        RetrievalRPrecision(),
        GroupSampler(sample_size=-1, encode_batch_size=batch_size, log_progress=progress),
    )
    result = Quaterion.evaluate(evaluator=evaluator, dataset=samples, model=model)
    return float(result["RetrievalRPrecision"])
