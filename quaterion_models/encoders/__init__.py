"""Encoders: turn collated raw records into embeddings."""

from quaterion_models.encoders.encoder import Encoder as Encoder
from quaterion_models.encoders.switch_encoder import SwitchEncoder as SwitchEncoder

__all__ = ["Encoder", "SwitchEncoder"]
