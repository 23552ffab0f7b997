"""Which encoders get a cache wrapper, and taking the wrappers off again."""

import logging
import warnings
from typing import Dict, Union

import torch

from quaterion.train.cache.cache_config import CacheConfig, CacheType
from quaterion.train.cache.cache_encoder import CacheEncoder
from quaterion.train.cache.disk_cache_encoder import DiskCacheEncoder
from quaterion.train.cache.in_memory_cache_encoder import InMemoryCacheEncoder
from quaterion_models.encoders import Encoder

logger = logging.getLogger(__name__)


def check_cuda(cache_type: CacheType, encoder_name: str) -> None:
    """``CacheType.GPU`` without CUDA -> ``ValueError``."""
    if cache_type == CacheType.GPU and not torch.cuda.is_available():
        raise ValueError(
            f"`CacheType.GPU` has been chosen for `{encoder_name}` encoder, "
            "but cuda is not available"
        )


def wrap_encoder(
    encoder: Encoder, cache_config: CacheConfig, encoder_name: str = ""
) -> Union[Encoder, CacheEncoder]:
    """The cache wrapper ``encoder`` gets under ``cache_config``, or ``encoder`` itself."""
    if isinstance(encoder, CacheEncoder):
        return encoder
    if encoder.trainable:
        if encoder_name in cache_config.mapping:
            raise ValueError(
                f"Can't configure cache for encoder {encoder_name}. "
                "Encoder must be frozen to cache it"
            )
        if cache_config.cache_type:
            logger.info(
                "Encoder %r is trainable and will not be cached (only frozen encoders are)",
                encoder_name,
            )
        return encoder
    cache_type = cache_config.mapping.get(encoder_name) or cache_config.cache_type
    if cache_type is None:
        logger.info(
            "Encoder %r is frozen and could be cached: add it to CacheConfig.mapping",
            encoder_name,
        )
        return encoder
    if cache_type == CacheType.NONE:
        return encoder
    check_cuda(cache_type, encoder_name)
    if cache_type == CacheType.DISK:
        return DiskCacheEncoder(encoder, cache_config.save_dir, encoder_name, cache_config.dtype)
    return InMemoryCacheEncoder(encoder, cache_type, cache_config.dtype)


def apply_cache_config(
    encoders: Union[Encoder, Dict[str, Encoder]], cache_config: CacheConfig
) -> Union[Encoder, Dict[str, Encoder]]:
    """New dict of encoders with the frozen ones wrapped as ``cache_config`` asks."""
    if cache_config.cache_type == CacheType.NONE:
        return encoders
    if not cache_config.cache_type and not cache_config.mapping:
        raise ValueError("If cache is configured, cache_type or mapping have to be set")
    if not isinstance(encoders, dict):
        return wrap_encoder(encoders, cache_config)
    extractors = cache_config.key_extractors
    unknown = sorted(set(extractors) - set(encoders)) if isinstance(extractors, dict) else []
    if unknown:
        raise ValueError(
            f"CacheConfig.key_extractors names encoders {unknown} that the model does not "
            f"have (encoders: {sorted(encoders)}); key the dict by one of those names"
        )
    unknown = sorted(set(cache_config.mapping) - set(encoders))
    if unknown:
        warnings.warn(
            f"CacheConfig.mapping names encoders {unknown} that the model does not have "
            f"(encoders: {sorted(encoders)}); those entries are ignored",
            stacklevel=3,
        )
    wrapped = {name: wrap_encoder(enc, cache_config, name) for name, enc in encoders.items()}
    return {**encoders, **wrapped}


def unwrap_cache_encoders(encoders: Dict[str, Encoder]) -> Dict[str, Encoder]:
    """New dict with every :class:`CacheEncoder` replaced by its wrapped encoder."""
    return {
        name: enc.wrapped_encoder if isinstance(enc, CacheEncoder) else enc
        for name, enc in encoders.items()
    }
