"""Evaluation: retrieval metrics, accumulators, samplers and the :class:`Evaluator`.

Import from the submodules (``quaterion.eval.evaluator``, ``quaterion.eval.group``,
``quaterion.eval.pair``, ``quaterion.eval.samplers``), as upstream does.
"""
