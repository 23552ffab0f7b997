"""``mine_hard_negatives``: the corpus items a model confuses with each query's positives."""

from collections.abc import Sequence
from typing import Any, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from quaterion.dataset.similarity_samples import SimilarityPairSample
from quaterion.distances import Distance
from quaterion.eval.blocks import check_embeddings
from quaterion.mining.cache_source import CachedEmbeddings
from quaterion.mining.index_source import check_query_model, mine_from_index
from quaterion.mining.mined import MinedNegatives
from quaterion.mining.options import MiningOptions, check_options
from quaterion.mining.positives import GroupPositives, PairPositives, as_group_ids
from quaterion.mining.prefilter import (
    BlockMiner,
    InaccurateLowPrecision,
    bf16_prefilter_applies,
    mine_bf16,
)
from quaterion.mining.scores import rows_per_block, score_blocks
from quaterion.mining.selection import drop_filtered, select_negatives

Items = Union[Tensor, np.ndarray, Sequence[Any]]


def mine_hard_negatives(
    queries: Items,
    corpus: Optional[Items] = None,
    *,
    positives: Optional[Sequence[Union[int, Sequence[int]]]] = None,
    groups: Optional[Any] = None,
    corpus_groups: Optional[Any] = None,
    model: Any = None,
    index: Any = None,
    distance: Union[Distance, str, None] = None,
    num_negatives: int = 3,
    range_min: int = 0,
    range_max: Optional[int] = None,
    absolute_margin: Optional[float] = None,
    relative_margin: Optional[float] = None,
    max_score: Optional[float] = None,
    min_score: Optional[float] = None,
    sampling: str = "top",
    seed: int = 0,
    block_size: Optional[int] = None,
    exact: bool = True,
    hnsw_ef: Optional[int] = None,
    batch_size: int = 64,
    show_progress: bool = True,
) -> MinedNegatives:
    """Find, for every query, the most similar corpus items that are not its positives.

    Scores are similarities on the distance's row-wise scale (cosine: ``cos`` in ``[-1, 1]``).
    Candidates of a query are the corpus items that are neither its positives nor the query
    itself (with ``corpus=None``); the controls act in this order:

    1. margins against the query's positive score ``p`` (the lowest if it has several):
       drop ``s`` with ``s + absolute_margin > p`` or ``s > p - |p| * relative_margin``;
       bounds: drop ``s > max_score`` and ``s < min_score``;
    2. rank window: the survivors ranked ``range_min .. range_max - 1`` (highest first);
    3. ``sampling="top"``: the first ``num_negatives`` of the window; ``"random"``: a uniform
       draw of ``num_negatives`` from it (seeded by ``seed``; ``range_max`` defaults to
       ``range_min + 10 * num_negatives`` with a filter set, else ``range_min +
       num_negatives``).

    These are the definitions of sentence-transformers' ``mine_hard_negatives``, except that
    every survivor is ranked (it ranks only the first ``range_max + max_positives + 1`` raw
    neighbours, so margins can leave it short where this finds negatives).

    Args:
        queries: ``(n, d)`` embeddings (tensor or array); with ``model``, the objects to
            encode (always encoded, even tensors). With ``index``: query vectors. Or the
            :class:`~quaterion.mining.CachedEmbeddings` of a persisted encoder cache (group
            data; its groups are used unless ``groups``/``positives`` are given).
        corpus: ``(M, d)`` embeddings or objects; ``None``: the queries themselves (group
            data), each query's own item excluded. Not used with ``index``.
        positives: pair data: for every query its positive's corpus index (or a list of
            them); with ``index``, point ids.
        groups: group data: ``(n,)`` integer group of every query; positives are the corpus
            items of the same group.
        corpus_groups: ``(M,)`` groups of the corpus (default: ``groups`` when ``corpus`` is
            ``None``).
        model: a ``SimilarityModel`` encoding object queries/corpus. With ``index``, it must
            be the servable the index was built with (same fingerprint, e.g. ``index.model``):
            vectors of another model are not comparable (``ModelMismatchError``).
        index: a ``quaterion_models.index.SimilarityIndex`` holding the corpus (integer point
            ids); its stored vectors are searched, nothing is encoded again.
        distance: the distance the model was trained with (default: cosine). With
            ``index``, the index's own distance is used; a different one given here is an
            error (``ValueError``).
        num_negatives: negatives per query.
        range_min: first survivor rank of the window (see above).
        range_max: end of the window (see above).
        absolute_margin: minimum gap below the positive score.
        relative_margin: minimum gap below the positive score, as a fraction of its magnitude.
        max_score: drop candidates scored above it.
        min_score: drop candidates scored below it.
        sampling: ``"top"`` or ``"random"``.
        seed: seed of ``"random"``.
        block_size: query rows scored at once (exact mode; default: a 192 MiB block).
        exact, hnsw_ef: index search mode (brute force, or HNSW with beam width ``hnsw_ef``).
        batch_size: objects per forward pass when encoding.
        show_progress: show a tqdm progress bar.

    Returns:
        :class:`MinedNegatives`: ``indices (n, num_negatives)`` with ``-1`` where too few
        candidates survive, their ``scores``, and ``positive_scores`` when a margin is set.

    Example::

        mined = mine_hard_negatives(embeddings, groups=labels, num_negatives=5, range_min=2)
        sampler = HardNegativeBatchSampler(mined, anchors_per_batch=32)
    """
    options = check_options(
        MiningOptions(
            num_negatives,
            range_min,
            range_max,
            absolute_margin,
            relative_margin,
            max_score,
            min_score,
            sampling,
            seed,
        )
    )
    if isinstance(queries, CachedEmbeddings):
        queries, groups = _from_cache(queries, positives, groups, model)
    if (positives is None) == (groups is None):
        raise ValueError(
            "mine_hard_negatives needs exactly one of positives=[...] (pair data: each "
            "query's positive corpus index) or groups=[...] (group data)."
        )
    if index is not None:
        if corpus is not None or groups is not None:
            raise ValueError(
                "With index=..., the index is the corpus: pass positives=[point ids] and no "
                "corpus or groups."
            )
        if distance is not None and Distance(distance) != Distance(index.distance):
            raise ValueError(
                f"distance={Distance(distance).value!r}, but the index {index.backend.location} "
                f"was built for {index.distance!r}: mining with an index scores by the index's "
                "distance; omit distance=..., or build the index with this distance"
            )
        if model is not None:
            check_query_model(index, model)
        query_vectors = _as_embeddings(queries, model, batch_size, "queries", "model")
        return mine_from_index(
            index, query_vectors, positives, options, exact, hnsw_ef, show_progress
        )
    query_vectors = _as_embeddings(queries, model, batch_size, "queries", "model")
    own = None
    if corpus is None:
        corpus_vectors = query_vectors
        own = torch.arange(query_vectors.shape[0], device=query_vectors.device)
    else:
        corpus_vectors = _as_embeddings(corpus, model, batch_size, "corpus", "model")
    if corpus_vectors.shape[1] != query_vectors.shape[1]:
        raise ValueError(
            f"queries have dim {query_vectors.shape[1]} but the corpus has dim "
            f"{corpus_vectors.shape[1]}: embed both with the same model."
        )
    n, size = query_vectors.shape[0], corpus_vectors.shape[0]
    query_groups = None
    if positives is not None:
        rule = PairPositives.from_lists(positives, n, size)
    else:
        query_groups = as_group_ids(groups, n, "groups")
        if corpus_groups is None:
            if corpus is not None:
                raise ValueError("With a corpus, group data also needs corpus_groups=[...].")
            corpus_groups = query_groups
        rule = GroupPositives(query_groups, as_group_ids(corpus_groups, size, "corpus_groups"))
    return _mine_exact(
        query_vectors,
        corpus_vectors,
        rule,
        own,
        query_groups,
        options,
        Distance(Distance.COSINE if distance is None else distance),
        block_size,
        show_progress,
    )


def _mine_exact(
    queries: Tensor,
    corpus: Tensor,
    rule: Union[PairPositives, GroupPositives],
    own: Optional[Tensor],
    groups: Optional[Tensor],
    options: MiningOptions,
    distance: Distance,
    block_size: Optional[int],
    show_progress: bool,
) -> MinedNegatives:
    """Blocked exact mining: memory O(block rows x corpus size)."""
    n = queries.shape[0]
    step = rows_per_block(corpus.shape[0], block_size)
    keys = random_keys(n, options, queries.device, corpus.shape[0])
    indices = torch.empty(n, options.num_negatives, dtype=torch.int64, device=queries.device)
    scores = torch.empty(n, options.num_negatives, dtype=queries.dtype, device=queries.device)
    positive = torch.empty(n, dtype=queries.dtype, device=queries.device)
    bar = tqdm(total=n, desc="Mining negatives", disable=not show_progress)
    if distance in (Distance.COSINE, Distance.DOT_PRODUCT) and bf16_prefilter_applies(
        queries.device, rule, options
    ):
        if distance == Distance.COSINE:
            queries, corpus = F.normalize(queries, p=2, dim=1), F.normalize(corpus, p=2, dim=1)
        try:
            with bar:
                miner = BlockMiner(queries, corpus, rule, own, options, keys)
                indices, scores, positive = mine_bf16(miner, step, bar)
            kept = positive if options.uses_positive_score else None
            return MinedNegatives(indices, scores, kept, groups, over_queries=own is not None)
        except InaccurateLowPrecision:
            bar = tqdm(total=n, desc="Mining negatives (float32)", disable=not show_progress)
    with bar:
        blocks = score_blocks(distance, queries, corpus, step)
        for start, block in zip(range(0, n, step), blocks):
            end = start + block.shape[0]
            block_own = None if own is None else own[start:end]
            positive[start:end] = rule.exclude(block, start, block_own, options.uses_positive_score)
            if options.filters:
                drop_filtered(block, positive[start:end], options)
            block_keys = None if keys is None else keys[start:end]
            indices[start:end], scores[start:end] = select_negatives(block, options, block_keys)
            bar.update(block.shape[0])
    kept = positive if options.uses_positive_score else None
    return MinedNegatives(indices, scores, kept, groups, over_queries=own is not None)


def random_keys(
    n: int, options: MiningOptions, device: torch.device, corpus_size: int
) -> Optional[Tensor]:
    """``(n, window width)`` uniform draws for ``sampling="random"`` (``None`` for ``"top"``);
    drawn at once from ``seed`` so results do not depend on the block size. The window is
    cut at the corpus size (no query has more candidates), so a huge ``range_max`` costs
    nothing."""
    if options.sampling != "random":
        return None
    generator = torch.Generator().manual_seed(options.seed)
    width = max(0, min(options.window_end, corpus_size) - options.range_min)
    return torch.rand(n, width, generator=generator).to(device)


def mine_pair_negatives(
    pairs: Sequence[SimilarityPairSample],
    model: Any = None,
    *,
    anchor_embeddings: Any = None,
    positive_embeddings: Any = None,
    **options: Any,
) -> list[SimilarityPairSample]:
    """Negative pairs (score ``0.0``) for pair data: each pair's anchor (``obj_a``) against
    the other pairs' ``obj_b``.

    Only pairs with ``score > 0`` are anchors; every pair's ``obj_b`` is a candidate, and an
    anchor's own ``obj_b`` (and every ``obj_b`` of a pair with the same ``obj_a`` object) is
    its positive. Give ``model`` to encode, or the embeddings of ``obj_a`` and ``obj_b`` of
    every pair. Other keyword arguments are :func:`mine_hard_negatives`'s controls.
    """
    pairs = list(pairs)
    if not pairs:
        raise ValueError("mine_pair_negatives got no pairs.")
    if any(not isinstance(pair, SimilarityPairSample) for pair in pairs):
        raise TypeError("mine_pair_negatives takes SimilarityPairSample items.")
    if (model is None) == (anchor_embeddings is None or positive_embeddings is None):
        raise ValueError("Give either model=... or both anchor_embeddings and positive_embeddings.")
    anchors = [i for i, pair in enumerate(pairs) if pair.score > 0]
    if not anchors:
        raise ValueError(
            f"no pair has a score > 0 among the {len(pairs)} pairs: anchors are the obj_a of "
            "positive pairs, so there is nothing to mine negatives for."
        )
    if anchor_embeddings is None:
        anchor_embeddings = model.encode([pairs[i].obj_a for i in anchors], to_numpy=False)
        positive_embeddings = model.encode([pair.obj_b for pair in pairs], to_numpy=False)
    else:
        anchor_embeddings = _as_embeddings(anchor_embeddings, None, 0, "anchor_embeddings", "")
        if anchor_embeddings.shape[0] != len(pairs):
            raise ValueError(
                f"{anchor_embeddings.shape[0]} anchor_embeddings for {len(pairs)} pairs."
            )
        anchor_embeddings = anchor_embeddings[anchors]
        positive_embeddings = _as_embeddings(
            positive_embeddings, None, 0, "positive_embeddings", ""
        )
        if positive_embeddings.shape[0] != len(pairs):
            raise ValueError(
                f"{positive_embeddings.shape[0]} positive_embeddings for {len(pairs)} pairs."
            )
    positives_of: dict[Any, list[int]] = {}
    for i, pair in enumerate(pairs):
        positives_of.setdefault(_identity(pair.obj_a), []).append(i)
    positives = [positives_of[_identity(pairs[i].obj_a)] for i in anchors]
    mined = mine_hard_negatives(
        anchor_embeddings, positive_embeddings, positives=positives, **options
    )
    return mined.pair_samples(
        [pairs[i].obj_a for i in anchors],
        [pair.obj_b for pair in pairs],
        [pairs[i].subgroup for i in anchors],
    )


def _identity(obj: Any) -> Any:
    """Equal hashable objects share a key (duplicated anchors pool their positives)."""
    try:
        hash(obj)
    except TypeError:
        return ("id", id(obj))
    return ("value", type(obj), obj)


def _from_cache(
    cached: CachedEmbeddings, positives: Any, groups: Any, model: Any
) -> tuple[Tensor, Any]:
    """Vectors and groups of a persisted cache read by :func:`read_cached_embeddings`."""
    if model is not None:
        raise ValueError(
            "queries are the servable vectors of a persisted cache: nothing is encoded, so "
            "pass no model"
        )
    if cached.is_pairs:
        raise ValueError(
            "this cache holds pairs: mine_pair_negatives(pairs, anchor_embeddings=cached.obj_a, "
            "positive_embeddings=cached.obj_b) mines them"
        )
    if positives is None and groups is None:
        groups = cached.groups
    return cached.vectors, groups


def _as_embeddings(items: Items, model: Any, batch_size: int, name: str, via: str) -> Tensor:
    """Checked float ``(N, d)`` embeddings: given directly, or ``model.encode(items)``."""
    if model is not None:  # objects (tensors too: e.g. raw inputs of a vector encoder)
        items = model.encode(list(items), batch_size=batch_size, to_numpy=False)
    if isinstance(items, np.ndarray):
        items = torch.from_numpy(items)
    if not isinstance(items, Tensor):
        raise TypeError(
            f"{name} is a {type(items).__name__}, not embeddings: pass a (N, d) tensor or "
            f"array, or {via}=... to encode the objects."
        )
    if not items.is_floating_point():
        raise TypeError(f"{name} must be float embeddings, got dtype {items.dtype}.")
    check_embeddings(items, name)
    return items.detach().float()
