"""Check an example's output directories before the run, so that a bad path fails at once."""

import os
from typing import Optional


def check_save_dir(path: str, option: str = "--save-dir") -> None:
    """Exit with a one-line error naming ``option`` when ``SimilarityModel.save(path)``
    would refuse ``path`` (a file, a folder of other things holding ``config.json``,
    ``head`` or ``encoders``, a read-only place): training first and failing at the save
    would waste the run. Files of your own in an existing servable directory are kept."""
    from quaterion_models.utils.directory_swap import check_save_target  # imports torch

    try:
        check_save_target(path)
    except (OSError, TypeError, ValueError) as err:
        detail = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise SystemExit(f"error: {option} {path}: {detail}") from None


def check_output_dir(path: Optional[str], option: str) -> None:
    """Exit with a one-line error naming ``option`` when ``path`` (an index or cache
    directory, created when missing) is a file or lies under one; ``None`` passes."""
    if path is None:
        return
    blocking = next(
        (p for p in (path, *_parents(path)) if os.path.exists(p) and not os.path.isdir(p)), None
    )
    if blocking is not None:
        where = "" if blocking == path else f" ({blocking} is a file)"
        raise SystemExit(f"error: {option} {path} is not a directory{where}; pass a directory path")


def _parents(path: str) -> list:
    parents, current = [], os.path.dirname(os.path.abspath(path))
    while current and current not in parents:
        parents.append(current)
        current = os.path.dirname(current)
    return parents
