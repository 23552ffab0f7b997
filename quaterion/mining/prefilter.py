"""Exact mining with a bfloat16 first pass (cosine and dot product on CPUs with bf16 units).

Scoring every query against every corpus item is a matrix product; in bfloat16 it runs about
twice as fast as in float32 on CPUs with AVX512-BF16 or AMX. Its scores are approximate, but
their error is bounded: with unit roundoff ``u = 2**-8``, inputs rounded to bf16, products
summed in float32 and the result rounded to bf16 (and Cauchy-Schwarz),
``abs(approx - s) <= (3u + 4u**2 + (d + 2) * 2**-23) * norm(q) * max(norm(c))``.

The block is ranked through its bits read as int16 (cheaper than bf16 arithmetic): for
non-negative values that order is the float order, and every negative value sorts below them,
so the ``width`` best by bits are the ``width`` best scores whenever the last of them is
non-negative (the certificate below requires it).

So each query keeps its ``width`` best approximate candidates, rescored in float32; when the
last window rank among them (after excluding positives and applying the filters) scores above
``t + bound``, where ``t`` is the lowest kept approximate score, no other corpus item can
reach the window and the negatives are exactly those of the float32 search (up to the
ordering of float32 near-ties). Queries that cannot be certified are retried with four
times the candidates, then scored in float32 against the whole corpus. Every candidate's
observed error is checked against the bound; a kernel that breaks it raises
:class:`InaccurateLowPrecision` and the caller redoes the search in float32.
"""

import functools
from typing import Any, Optional, Union

import torch
from torch import Tensor

from quaterion.mining.options import MiningOptions
from quaterion.mining.positives import GroupPositives, PairPositives
from quaterion.mining.selection import NEG_INF, drop_filtered, select_negatives, top_k

UNIT_ROUNDOFF = 2.0**-8
# Most positives per query the candidate masks handle ((rows, width, positives) booleans).
MAX_PAIR_POSITIVES = 64
# Float32 rows scored against the whole corpus at once, as a fraction of a block's rows.
DENSE_SHARE = 8

# Candidates kept beyond the window, the positives and the query's own item at first.
FIRST_SLACK = 8
# Columns per chunk of the first top-k pass over the bf16 bits.
BITS_CHUNK = 64
#: Candidate lists tried per query (the first, then 4x wider) before its whole row is scored
#: in float32: filters that drop every query's top scores (a low ``max_score``, wide margins)
#: would otherwise widen round after round, each round dearer than one float32 row.
CANDIDATE_ROUNDS = 2

Rule = Union[PairPositives, GroupPositives]


class InaccurateLowPrecision(RuntimeError):
    """The bf16 matrix product missed its error bound: mining redoes the search in float32."""


@functools.lru_cache(maxsize=None)
def cpu_has_bf16_units() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX-BF16; Linux flags)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        return False
    return False


def bf16_prefilter_applies(device: torch.device, rule: Rule, options: MiningOptions) -> bool:
    """Whether :func:`mine_blocks_bf16` serves this search: a CPU with bf16 units, and positives
    it can mask on candidates (at most :data:`MAX_PAIR_POSITIVES` pairs per query; no group
    positive score, which needs a whole row)."""
    if device.type != "cpu" or not cpu_has_bf16_units():
        return False
    if isinstance(rule, GroupPositives):
        return not options.uses_positive_score
    return rule.max_count() <= MAX_PAIR_POSITIVES


def error_bound(query_norms: Tensor, corpus_max_norm: float, dim: int) -> Tensor:
    """Largest ``|approx - exact|`` of a bf16 score per query row (see the module doc)."""
    u = UNIT_ROUNDOFF
    factor = (3 * u + 4 * u * u + (dim + 2) * 2.0**-23) * (1 + 1e-6)
    return (query_norms.double() * (factor * corpus_max_norm)).float() + 1e-30


class _Block:
    """One block of queries: their float32 rows, excluded cells and positive scores."""

    def __init__(self, miner: "BlockMiner", start: int, queries: Tensor):
        self.miner, self.start, self.queries = miner, start, queries
        b = queries.shape[0]
        rule, own = miner.rule, miner.own
        self.own = None if own is None else own[start : start + b]
        self.positive_cols = None
        self.groups = None
        if isinstance(rule, PairPositives):
            self.positive_cols = rule.padded(start, b)
        else:
            self.groups = rule.groups[start : start + b]
        self.positive = torch.full((b,), float("inf"), dtype=queries.dtype)
        if self.positive_cols is not None and miner.options.uses_positive_score:
            cols = self.positive_cols
            pairs = (miner.corpus[cols.clamp(min=0)] * queries[:, None, :]).sum(-1)
            self.positive = pairs.masked_fill(cols < 0, float("inf")).amin(dim=1)

    def exclude(self, scores: Tensor, rows: Tensor, cand: Optional[Tensor]) -> Tensor:
        """``scores (r, L)`` of block rows ``rows`` with positives, own items and filtered
        cells at ``-inf``; ``cand (r, L)`` their corpus columns (``None``: all columns)."""
        if self.positive_cols is not None:
            cols = self.positive_cols[rows]
            if cand is None:
                padded = torch.nn.functional.pad(scores, (0, 1))
                padded.scatter_(1, cols.masked_fill(cols < 0, scores.shape[1]), NEG_INF)
                scores = padded[:, :-1]
            else:
                hit = (cand[:, :, None] == cols[:, None, :]) & (cols[:, None, :] >= 0)
                scores = scores.masked_fill(hit.any(-1), NEG_INF)
        else:
            corpus_groups = self.miner.rule.corpus_groups
            found = corpus_groups[None, :] if cand is None else corpus_groups[cand]
            scores = scores.masked_fill(found == self.groups[rows, None], NEG_INF)
        if self.own is not None:
            own = self.own[rows, None]
            if cand is None:
                cand_own = torch.arange(scores.shape[1])[None, :] == own
            else:
                cand_own = cand == own
            scores = scores.masked_fill(cand_own, NEG_INF)
        if self.miner.options.filters:
            drop_filtered(scores, self.positive[rows], self.miner.options)
        return scores


class BlockMiner:
    """Negatives of query blocks through bf16 candidates certified in float32."""

    def __init__(
        self,
        queries: Tensor,
        corpus: Tensor,
        rule: Rule,
        own: Optional[Tensor],
        options: MiningOptions,
        keys: Optional[Tensor],
    ):
        self.queries, self.corpus, self.rule, self.own = queries, corpus, rule, own
        self.options, self.keys = options, keys
        self.corpus_t_bf16 = corpus.to(torch.bfloat16).T
        self.corpus_max_norm = float(torch.linalg.vector_norm(corpus.double(), dim=1).max())
        extra = rule.max_count() if isinstance(rule, PairPositives) else 0
        self.first_width = options.window_end + extra + 1 + FIRST_SLACK

    def mine(
        self, start: int, approx: Tensor, indices: Tensor, scores: Tensor, positive: Tensor
    ) -> None:
        """Fill ``indices``/``scores``/``positive`` rows ``start..`` from a bf16 block."""
        b = approx.shape[0]
        queries = self.queries[start : start + b]
        block = _Block(self, start, queries)
        bound = error_bound(torch.linalg.vector_norm(queries, dim=1), self.corpus_max_norm,
                            queries.shape[1])  # fmt: skip
        positive[start : start + b] = block.positive
        rows = torch.arange(b)
        width, size, rounds = self.first_width, approx.shape[1], 0
        while rows.numel() and width * DENSE_SHARE < size and rounds < CANDIDATE_ROUNDS:
            rounds += 1
            bits = approx if rows.numel() == b else approx[rows]
            kept_bits, cand = top_k(bits.view(torch.int16), width, BITS_CHUNK)
            kept = kept_bits.view(torch.bfloat16).float()
            exact = self._rescore(queries[rows], cand)
            if bool(((exact - kept).abs() > bound[rows, None]).any()):
                raise InaccurateLowPrecision(
                    "bf16 scores strayed beyond their error bound; mining in float32"
                )
            exact = block.exclude(exact, rows, cand)
            last = torch.topk(exact, self.options.window_end, dim=1).values[:, -1]
            done = (kept_bits[:, -1] >= 0) & (last > kept[:, -1] + bound[rows])
            self._select(start, rows[done], exact[done], cand[done], indices, scores)
            rows, width = rows[~done], width * 4
        for part in torch.split(rows, max(1, b // DENSE_SHARE)):
            exact = block.exclude(torch.mm(queries[part], self.corpus.T), part, None)
            self._select(start, part, exact, None, indices, scores)

    def _rescore(self, queries: Tensor, cand: Tensor) -> Tensor:
        """Float32 scores ``(r, L)`` of ``queries (r, d)`` against their candidates ``cand``.

        Gathering the candidates' rows takes ``r x L x d`` floats; once that exceeds scoring
        the whole corpus (``r x M``, the float32 path's block), the rows are scored against
        the corpus in one product and the candidates' scores read from it.
        """
        if cand.shape[1] * queries.shape[1] <= self.corpus.shape[0]:
            return (self.corpus[cand] * queries[:, None, :]).sum(-1)
        return torch.mm(queries, self.corpus.T).gather(1, cand)

    def _select(
        self,
        start: int,
        rows: Tensor,
        exact: Tensor,
        cand: Optional[Tensor],
        indices: Tensor,
        scores: Tensor,
    ) -> None:
        """Choose the negatives of block rows ``rows`` from their scored candidates."""
        if not rows.numel():
            return
        at = rows + start
        keys = None if self.keys is None else self.keys[at]
        indices[at], scores[at] = select_negatives(exact, self.options, keys, cand)


def mine_bf16(miner: BlockMiner, block_rows: int, progress: Any) -> tuple[Tensor, Tensor, Tensor]:
    """``(indices, scores, positive)`` of every query of ``miner`` (see the module doc), its
    queries and corpus already on the similarity scale (normalised for cosine), scored
    ``block_rows`` at a time; ``progress`` is advanced by each block's row count."""
    queries, options = miner.queries, miner.options
    n = queries.shape[0]
    indices = torch.empty(n, options.num_negatives, dtype=torch.int64)
    scores = torch.empty(n, options.num_negatives, dtype=queries.dtype)
    positive = torch.empty(n, dtype=queries.dtype)
    buffer = torch.empty(min(block_rows, n), miner.corpus.shape[0], dtype=torch.bfloat16)
    for start in range(0, n, block_rows):
        part = queries[start : start + block_rows].to(torch.bfloat16)
        approx = torch.mm(part, miner.corpus_t_bf16, out=buffer[: part.shape[0]])
        miner.mine(start, approx, indices, scores, positive)
        progress.update(part.shape[0])
    return indices, scores, positive
