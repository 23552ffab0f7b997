"""Old private name of :mod:`quaterion_models.utils.files`, kept importable as an alias."""

import sys

from quaterion_models.utils import files as _public

sys.modules[__name__] = _public
