"""Errors raised when reading saved models."""

import pickle


class DamagedFileError(ValueError):
    """A file that should hold part of a saved model is damaged or is not such a file.

    The message names the file. Typical causes: a copy or download that stopped early
    (truncated ``weights.bin``), a hand-edited ``config.json``, or the wrong directory.
    Fix: save the model again, or copy the whole directory again.
    """


class UnsafeFileError(pickle.UnpicklingError):
    """A weights file references objects that could run code when unpickled, or a config
    names a module whose code lies inside the directory being loaded; nothing was run.

    The message names the objects and the opt-in, ``SimilarityModel.load(path, trusted=True)``,
    to use only for files you created or otherwise trust.
    """


class WrongClassError(DamagedFileError, TypeError):
    """A config file names a class of the wrong kind (e.g. ``torch.nn.Linear`` as a head).

    Both a :class:`DamagedFileError` and a ``TypeError`` (what earlier versions raised).
    """
