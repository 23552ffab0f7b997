"""Old private name of :mod:`quaterion_models.utils.batch_checks`, kept importable as an alias."""

import sys

from quaterion_models.utils import batch_checks as _public

sys.modules[__name__] = _public
