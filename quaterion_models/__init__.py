"""quaterion_models: the inference side of quaterion (torch and numpy only).

Importing this package only defines names: it never imports ``pytorch_lightning``,
``quaterion`` or ``gensim``.
"""

from quaterion_models.model import SimilarityModel as SimilarityModel

__all__ = ["SimilarityModel"]
