"""Loads quick-start servables saved before the demo used the library ``TransformerEncoder``.

Those servables record their encoder as ``examples.quick_start.MiniLMEncoder`` (resolved
through that module's ``__getattr__``) and hold a sentence-transformers model directory, which
:class:`~quaterion_models.encoders.extras.transformer_encoder.TransformerEncoder` reads as is.
New servables record ``TransformerEncoder`` itself and load without the examples package.
"""

from quaterion_models.encoders.extras.transformer_encoder import TransformerEncoder


class MiniLMEncoder(TransformerEncoder):
    """Former quick-start encoder name; loading one gives a plain ``TransformerEncoder``."""

    @classmethod
    def load(cls, input_path: str) -> TransformerEncoder:
        """Read the sentence-transformers directory an old quick-start servable saved."""
        return TransformerEncoder(input_path)
