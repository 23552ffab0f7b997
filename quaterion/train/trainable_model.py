"""``TrainableModel``: the LightningModule users subclass to describe a similarity model."""

import contextlib
import warnings
from typing import Any, Dict, Iterator, List, Optional, Union

import pytorch_lightning as pl
from pytorch_lightning.utilities.seed import isolate_rng
from torch import Tensor
from typing_extensions import override

from quaterion.dataset.similarity_data_loader import SimilarityDataLoader
from quaterion.dataset.train_collator import TrainCollator
from quaterion.distributed import is_global_rank_zero, world_size
from quaterion.eval.attached_metric import AttachedMetric
from quaterion.loss import GroupLoss, SimilarityLoss
from quaterion.train.fit_checks import check_batch_labels
from quaterion.train._hook_checks import check_encoders, check_hook_result, check_metrics
from quaterion.train._rng import ResumedRng
from quaterion.train.batch_order import checkpoint_entry, note_progress, restore_order
from quaterion.train.batch_order import settle_resumed_order
from quaterion.train.rank_batches import check_batches_agree, check_lengths_agree
from quaterion.train.cache import CacheConfig, CacheType
from quaterion.train.cache.setup import CachedLoaders, apply_cache_config, cache_loaders
from quaterion.train.cache.setup import unwrap_encoders
from quaterion.train.cache.store import CacheStore
from quaterion.train.cache_mixin import CacheMixin
from quaterion.train.callbacks.cleanup_callback import restore_dataloader
from quaterion.train.callbacks.guard_callback import (
    GuardCallback,
    check_loss_output,
    watch_evaluation_loss,
)
from quaterion.train.callbacks.rank_failure_callback import RankFailureCallback
from quaterion.deferred_checks import DeferredChecks
from quaterion.train.gradient_cache import GradientCacheConfig, cached_gradient_step
from quaterion.train.xbm import XbmConfig
from quaterion.train.xbm.xbm_buffer import XbmBuffer
from quaterion.train.xbm.xbm_checkpoint import restore_memory, save_memory
from quaterion.train.xbm.xbm_term import memory_term
from quaterion.utils.enums import TrainStage
from quaterion_models import SimilarityModel
from quaterion_models.encoders import Encoder
from quaterion_models.heads import EncoderHead

_BATCH_ORDER_KEY = "quaterion_batch_order"


class TrainableModel(pl.LightningModule, CacheMixin):
    """Similarity model plus loss, metrics, cache and XBM settings, trained by Lightning.

    Override the ``configure_*`` hooks; they run in ``__init__`` in this order:
    ``configure_encoders`` -> ``configure_caches`` -> ``configure_head(sum of embedding
    sizes)`` -> ``configure_metrics`` -> (``SimilarityModel`` built) -> ``configure_loss`` ->
    ``configure_xbm``. Set attributes the hooks read *before* calling ``super().__init__()``.

    Each step: ``embeddings = model(features)``, ``loss = loss(embeddings=..., **targets)``
    (+ ``weight * xbm_loss`` in training past ``start_iteration``), logged as
    ``train_loss`` / ``validation_loss`` / ``test_loss`` and ``<metric>_<stage>``.

    Set the class attribute ``check_finite_loss = False`` to train on through NaN/inf losses
    and gradients (by default ``Quaterion.fit`` stops with ``NonFiniteLossError`` or
    ``NonFiniteGradientError`` before applying one, and with ``NonFiniteValidationError`` on
    a NaN/inf validation loss).

    Example:
        >>> class Model(TrainableModel):
        ...     def configure_encoders(self): return MyFrozenEncoder()
        ...     def configure_head(self, input_embedding_size): return EmptyHead(input_embedding_size)
        ...     def configure_loss(self): return TripletLoss()
        ...     def configure_optimizers(self): return torch.optim.Adam(self.model.parameters())
    """

    check_finite_loss: bool = True
    """Stop the fit on a NaN/inf training loss or gradient, or validation loss (see
    ``GuardCallback``); ``False`` disables these checks."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._cache_sources: List[SimilarityDataLoader] = []  # loaders the cache set up
        self._cache_hold: Optional[Any] = None  # CachedLoaders.hold: the fit's lock on save_dir
        self._resumed_order: Optional[Dict[str, Any]] = None  # batch order of a resumed fit
        self._order_restored = False  # whether on_load_checkpoint restored it
        self._rng = ResumedRng()  # the random state a resumed fit puts back
        encoders = check_encoders(self.configure_encoders(), Encoder)
        self.cache_config = check_hook_result(
            "configure_caches",
            self.configure_caches(),
            CacheConfig,
            "return a CacheConfig or None (no cache)",
        ) or CacheConfig(cache_type=CacheType.NONE)
        input_size = SimilarityModel.get_encoders_output_size(encoders) if encoders else 0
        head = check_hook_result(
            "configure_head",
            self.configure_head(input_size),
            EncoderHead,
            "return a head from quaterion_models.heads",
        )
        self.attached_metrics: List[AttachedMetric] = check_metrics(
            self.configure_metrics(), AttachedMetric
        )
        model = None
        if encoders is not None and head is not None:
            model = SimilarityModel(encoders=encoders, head=head)
        self._model = model
        self._loss = check_hook_result(
            "configure_loss",
            self.configure_loss(),
            SimilarityLoss,
            "return a loss from quaterion.loss",
        )
        self._xbm_config = check_hook_result(
            "configure_xbm", self.configure_xbm(), XbmConfig, "return an XbmConfig or None"
        )
        self._xbm_buffer = None
        if self._xbm_config is not None:
            self._xbm_buffer = XbmBuffer(self._xbm_config, embedding_size=head.output_size)
        self._gradient_cache_config = check_hook_result(
            "configure_gradient_cache",
            self.configure_gradient_cache(),
            GradientCacheConfig,
            "return a GradientCacheConfig or None (off)",
        )
        self._replay_checks = DeferredChecks()  # the gradient cache's replay verdicts

    @property
    def model(self) -> SimilarityModel:
        """The ``SimilarityModel`` being trained."""
        return self._model

    @property
    def loss(self) -> SimilarityLoss:
        """The loss from ``configure_loss``."""
        return self._loss

    def configure_encoders(self) -> Union[Encoder, Dict[str, Encoder]]:
        """One ``Encoder`` or ``{name: Encoder}``. Must be overridden."""
        raise NotImplementedError()

    def configure_head(self, input_embedding_size: int) -> EncoderHead:
        """Head over the concatenated encoder outputs (width ``input_embedding_size``)."""
        raise NotImplementedError()

    def configure_loss(self) -> SimilarityLoss:
        """The loss; may use ``self.model`` (e.g. ``self.model.head.output_size``)."""
        raise NotImplementedError()

    def configure_caches(self) -> Optional[CacheConfig]:
        """Cache settings for frozen encoders; ``None`` (default) disables the cache."""
        return None

    def configure_metrics(self) -> Union[AttachedMetric, List[AttachedMetric]]:
        """Metrics computed and logged per batch as ``<name>_<stage>``; default none."""
        return []

    def configure_xbm(self) -> Optional[XbmConfig]:
        """Cross-batch memory settings; ``None`` (default) disables XBM."""
        return None

    def configure_gradient_cache(self) -> Optional[GradientCacheConfig]:
        """Encode training batches in mini-batches with full-batch gradients; ``None`` (default)
        encodes each batch at once. See the guide "Large batches with trainable encoders"."""
        return None

    def process_results(
        self,
        embeddings: Tensor,
        targets: Dict[str, Any],
        batch_idx: int,
        stage: TrainStage,
        **kwargs: Any,
    ) -> None:
        """Called at the end of every train/validation/test step; no-op by default."""

    @override
    def training_step(self, batch, batch_idx: int, **kwargs: Any) -> Tensor:
        return self._common_step(batch, batch_idx, TrainStage.TRAIN, **kwargs)

    @override
    def validation_step(self, batch, batch_idx: int, **kwargs: Any) -> None:
        self._common_step(batch, batch_idx, TrainStage.VALIDATION, **kwargs)

    @override
    def test_step(self, batch, batch_idx: int, **kwargs: Any) -> None:
        self._common_step(batch, batch_idx, TrainStage.TEST, **kwargs)

    def _xbm_term(self, embeddings: Tensor, targets: Dict[str, Any]) -> Optional[Tensor]:
        config = self._xbm_config
        if config is None or self.trainer.global_step <= config.start_iteration:
            return None
        if not isinstance(self._loss, GroupLoss):
            raise NotImplementedError("XBM is currently supported only with GroupLoss instances")
        term = memory_term(self._loss, self._xbm_buffer, embeddings, targets["groups"])
        return config.weight * term

    def _trainer_or_none(self) -> Optional[pl.Trainer]:
        try:
            return self.trainer
        except RuntimeError:  # no Trainer attached (a step called by hand)
            return None

    def _barebones(self) -> bool:
        """Trainer(barebones=True) forbids ``self.log``: nothing is logged (warned at fit start)."""
        # no Trainer attached: self.log itself would warn and skip
        trainer = self._trainer_or_none()
        return trainer is not None and trainer.barebones

    def _common_step(self, batch, batch_idx: int, stage: TrainStage, **kwargs: Any) -> Tensor:
        features, targets = batch

        def compute_loss(embeddings: Tensor) -> Tensor:
            loss = check_loss_output(self.loss, self.loss(embeddings=embeddings, **targets))
            if stage != TrainStage.TRAIN:
                watch_evaluation_loss(self._trainer_or_none(), loss, batch_idx)
            else:
                xbm = self._xbm_term(embeddings, targets)
                if xbm is not None:
                    loss = loss + xbm
            return loss

        config = self._gradient_cache_config
        if stage == TrainStage.TRAIN and config is not None:
            embeddings, loss = cached_gradient_step(
                self.model,
                features,
                compute_loss,
                list(self.parameters()),
                config,
                self.device,
                self._replay_checks,
            )
        else:
            embeddings = self.model(features)
            loss = compute_loss(embeddings)
        batch_size = embeddings.shape[0]
        logging = not self._barebones()
        # sync_dist: epoch values are reduced over DDP ranks (a no-op in one process)
        if logging:
            self.log(f"{stage}_loss", loss, batch_size=batch_size, sync_dist=True)
        for metric in self.attached_metrics if logging else ():
            if stage in metric.stages:
                # an undefined (NaN) batch value is logged with weight 0: see batch_value
                value, weight = metric.batch_value(embeddings, targets)
                self.log(
                    f"{metric.name}_{stage}",
                    value,
                    **{"sync_dist": True, **metric.log_options},
                    batch_size=weight,
                )
        self.process_results(
            embeddings=embeddings, targets=targets, batch_idx=batch_idx, stage=stage, **kwargs
        )
        return loss

    @override
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> Optional[int]:
        """Tells the training loader's batch sampler how much of its epoch is trained (see
        :func:`~quaterion.train.batch_order.note_progress`) and, under DDP with a loader of
        unknown length, checks that every rank has this batch (see
        :func:`~quaterion.train.rank_batches.check_batches_agree`). Call
        ``super().on_train_batch_start(batch, batch_idx)`` when overriding."""
        note_progress(self.trainer, batch_idx)
        check_batches_agree(self.trainer, "train", batch_idx)
        return None

    @override
    def on_validation_batch_start(
        self, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """Under DDP with a loss that gathers across ranks and a validation loader of
        unknown length, checks that every rank has this batch (see
        :func:`~quaterion.train.rank_batches.check_batches_agree`; without a gathering loss
        a validation step takes no collective, and ranks may validate on different numbers
        of batches). Call ``super().on_validation_batch_start(batch, batch_idx,
        dataloader_idx)`` when overriding."""
        if self._gathers():
            check_batches_agree(self.trainer, "validation", batch_idx, dataloader_idx)

    def _gathers(self) -> bool:
        """Whether the loss gathers rows across ranks (a collective in every step)."""
        return bool(getattr(self._loss, "gather_across_ranks", False))

    @override
    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # pair scores are checked here, on the CPU, so that the device never syncs for it
        check_batch_labels(self._loss, batch)
        return batch

    @override
    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        self._rng.save(checkpoint)
        save_memory(self._xbm_buffer, checkpoint)
        order = checkpoint_entry(self.trainer)
        if order is not None:
            checkpoint[_BATCH_ORDER_KEY] = order

    @override
    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        # Only when Lightning resumes a fit: a plain load must not reseed the caller's RNG.
        try:
            trainer = self.trainer
        except RuntimeError:  # not attached to a Trainer
            trainer = None
        if trainer is None or trainer.state.fn != "fit":
            return
        order = checkpoint.get(_BATCH_ORDER_KEY) or {}
        self._rng.load(checkpoint, inside_epoch=bool(order.get("replays_epoch")))
        restore_memory(self._xbm_buffer, checkpoint)
        # None: written before the batch order was kept (on_train_start warns)
        self._resumed_order = checkpoint.get(_BATCH_ORDER_KEY)
        self._order_restored = bool(self._cache_sources)
        if self._order_restored:  # Quaterion.fit's train loader, before anything iterates it
            restore_order(self._resumed_order, self._cache_sources[0])

    @override
    def on_validation_start(self) -> None:
        """Moves cached rows to the device and, under DDP with a loss that gathers across
        ranks (a collective in every validation step), checks that the ranks' validation
        loaders have the same length (see
        :func:`~quaterion.train.rank_batches.check_lengths_agree`). Call
        ``super().on_validation_start()`` when overriding."""
        self._place_caches()
        if self._gathers():
            check_lengths_agree(self.trainer, "validation")
        if self.trainer.sanity_checking:  # the sanity check must not shift the random stream
            self._sanity_rng = isolate_rng()
            self._sanity_rng.__enter__()

    @override
    def on_validation_end(self) -> None:
        isolated = getattr(self, "_sanity_rng", None)
        if isolated is not None and self.trainer.sanity_checking:
            self._sanity_rng = None
            isolated.__exit__(None, None, None)

    @override
    def on_fit_start(self) -> None:
        """Moves cached rows to the training device, sets the modes the fit trains in
        (:meth:`set_training_modes`) and keeps the random state the first epoch starts
        with. Call ``super().on_fit_start()`` when overriding."""
        self._place_caches()
        self.set_training_modes()
        self._rng.fit_started()

    @override
    def on_train_epoch_start(self) -> None:
        """Keeps the random state of the epoch's start for checkpoints written inside it
        (see Resuming in the training guide). Call ``super().on_train_epoch_start()`` when
        overriding."""
        self._rng.epoch_started()

    @override
    def on_train_epoch_end(self) -> None:
        """Reads the gradient cache's replay verdicts still queued (see
        :func:`~quaterion.train.gradient_cache.cached_gradient_step`) and raises a failed
        one. Call ``super().on_train_epoch_end()`` when overriding."""
        self._replay_checks.raise_all()

    @override
    def on_train_start(self) -> None:
        """Under DDP, checks that the ranks' training loaders have the same length (see
        :func:`~quaterion.train.rank_batches.check_lengths_agree`). In a fit resumed from a
        checkpoint: restores the training loader's batch order
        (e.g. a :class:`~quaterion.dataset.GroupCycleBatchSampler`'s) unless that is done,
        and warns where the resumed batches cannot be an uninterrupted fit's (see
        :func:`~quaterion.train.batch_order.settle_resumed_order`). Call
        ``super().on_train_start()`` when overriding."""
        self._rng.train_started(resumed=self.trainer.ckpt_path is not None)
        check_lengths_agree(self.trainer, "train")
        if self.trainer.ckpt_path is None:
            return
        entry, self._resumed_order = self._resumed_order, None
        # Lightning hands the loader its state itself when it resumes inside an epoch
        restored = self._order_restored or self.trainer.fit_loop.restarting
        settle_resumed_order(entry, self.trainer, restored)

    def set_training_modes(self) -> None:
        """The whole module (head, trainable encoders, the loss and any other sub-module) in
        train mode (dropout on, batch norm updating its statistics), then frozen encoders in
        eval mode (they are not trained, and their outputs equal what a cache of them holds).

        Lightning 2 keeps each module's mode as it finds it, where Lightning 1 (and so the
        original Quaterion) switched the whole model to train mode: a model that was used by
        ``SimilarityModel.encode`` (which leaves it in eval mode) or loaded by ``transformers``
        (eval mode) would otherwise train without dropout. Lightning's validation loop
        restores these modes after every validation run. Override to choose other modes.
        """
        self.train()
        if self._model is None:
            return
        for encoder in self._model.encoders.values():
            if not encoder.trainable:
                encoder.eval()

    @override
    def configure_callbacks(self) -> List[pl.Callback]:
        """A :class:`~quaterion.train.callbacks.rank_failure_callback.RankFailureCallback` and a
        :class:`~quaterion.train.callbacks.GuardCallback`, each unless the trainer has one, so
        that a plain ``trainer.fit`` gets what ``Quaterion.fit`` attaches: every rank learns
        which rank failed and why, and a non-finite loss or gradient (or a broken
        ``gather_rows`` promise on a GPU) is never applied. Call
        ``super().configure_callbacks()`` when overriding."""
        trainer = self._trainer_or_none()
        present = [] if trainer is None else trainer.callbacks
        return [
            callback_type()
            for callback_type in (RankFailureCallback, GuardCallback)
            if not any(isinstance(callback, callback_type) for callback in present)
        ]

    def _place_caches(self) -> None:
        if self._model is None:
            return
        for encoder in self._model.encoders.values():
            if isinstance(encoder, CacheStore):
                encoder.place(self.device)

    def setup_dataloader(self, dataloader: SimilarityDataLoader) -> None:
        """Install a plain ``TrainCollator`` over the loader's original pre-collate (idempotent).

        Raises:
            TypeError: ``dataloader`` is not a ``SimilarityDataLoader``.
        """
        if not isinstance(dataloader, SimilarityDataLoader):
            raise TypeError(
                "setup_dataloader: the loader must be a SimilarityDataLoader "
                "(PairsSimilarityDataLoader or GroupSimilarityDataLoader), got "
                f"{type(dataloader).__name__}"
            )
        encoders = self.model.encoders
        dataloader.collate_fn = TrainCollator(
            pre_collate_fn=dataloader.original_params["collate_fn"],
            encoder_collates={name: enc.get_collate_fn() for name, enc in encoders.items()},
            meta_extractors={name: enc.get_meta_extractor() for name, enc in encoders.items()},
        )

    def setup_cache(
        self,
        trainer: pl.Trainer,
        train_dataloader: SimilarityDataLoader,
        val_dataloader: Optional[SimilarityDataLoader],
    ) -> bool:
        """:meth:`setup_dataloader` on each loader, then wrap frozen encoders and fill (or
        load) their cache; ``True`` if any is cached."""
        return self.cache_loaders(trainer, train_dataloader, val_dataloader).cached

    def cache_loaders(
        self,
        trainer: pl.Trainer,
        train_dataloader: SimilarityDataLoader,
        val_dataloader: Optional[SimilarityDataLoader],
    ) -> CachedLoaders:
        """:meth:`setup_dataloader` on each loader, then the cache set-up of
        :meth:`setup_cache`; returns the loaders to fit on (store-served where the data is
        fully cached) and whether anything is cached."""
        if trainer is None:
            raise TypeError("trainer must be a pytorch_lightning.Trainer, got NoneType")
        if train_dataloader is None:
            raise TypeError(
                "train_dataloader must be a SimilarityDataLoader (PairsSimilarityDataLoader or "
                "GroupSimilarityDataLoader), got NoneType"
            )
        loaders = [dl for dl in (train_dataloader, val_dataloader) if dl is not None]
        for loader in loaders:
            self.setup_dataloader(loader)
        self._cache_sources = loaders  # put back by unwrap_cache
        self._release_cache_hold()  # of an earlier set-up that was never cleaned up
        with self._unwrapped_on_failure():  # nothing reaches the trainer: undo the set-up here
            self.model.encoders = apply_cache_config(self.model.encoders, self.cache_config)
            fit = cache_loaders(
                trainer, self.model.encoders, train_dataloader, val_dataloader, self.cache_config
            )
        self._cache_hold = fit.hold  # released by unwrap_cache, when the fit ends
        return fit

    @contextlib.contextmanager
    def _unwrapped_on_failure(self) -> Iterator[None]:
        """:meth:`unwrap_cache` when the body raises (the error goes on)."""
        try:
            yield
        except BaseException:
            self.unwrap_cache()
            raise

    def unwrap_cache(self) -> None:
        """Replace every cache encoder by the encoder it wraps (drops the cached vectors) and
        put the loaders the cache set up back into their plain state (see
        :class:`~quaterion.train.callbacks.CleanupCallback`, which calls this when a fit ends)."""
        if self._model is not None:
            self._model.encoders = unwrap_encoders(self._model.encoders)
        self._release_cache_hold()
        sources, self._cache_sources = self._cache_sources, []
        for loader in sources:
            restore_dataloader(self, loader)

    @override
    def teardown(self, stage: str) -> None:
        """When a fit ends, its hold on the cache's ``save_dir`` ends too (also for a
        ``trainer.fit`` the user runs after :meth:`cache_loaders`, without the clean-up of
        ``Quaterion.fit``); an override should call ``super().teardown(stage)``."""
        if stage == "fit":
            self._release_cache_hold()

    def _release_cache_hold(self) -> None:
        """End the fit's shared hold on the cache's ``save_dir`` (see ``CachedLoaders.hold``)."""
        hold, self._cache_hold = self._cache_hold, None
        if hold is not None:
            hold.release()

    def save_servable(self, path: str) -> None:
        """``unwrap_cache()`` then ``self.model.save(path)`` (a ``SimilarityModel`` directory).

        Under DDP only global rank 0 writes; the other ranks return at once. It takes no
        collective, so it may be called on every rank or on rank 0 only
        (``if trainer.global_rank == 0: model.save_servable(path)``), and never waits for
        other ranks. A rank that reads the files afterwards must wait for rank 0 itself,
        e.g. with ``trainer.strategy.barrier()`` called on every rank.
        """
        self.unwrap_cache()
        if is_global_rank_zero():
            self.model.save(path)
        elif world_size() == 1:  # no process group: the launcher's environment said rank > 0
            warnings.warn(
                f"save_servable({path!r}) wrote nothing: no process group is initialised and "
                "the environment (RANK, LOCAL_RANK or SLURM_PROCID) makes this process a rank "
                "other than 0, and only global rank 0 writes. Unset those variables in a "
                "single-process run.",
                stacklevel=2,
            )
