"""Check an example's output directory before the run, so that a bad path fails at once."""

from quaterion_models.utils.directory_swap import check_save_target


def check_save_dir(path: str, option: str = "--save-dir") -> None:
    """Exit with a one-line error naming ``option`` when ``SimilarityModel.save(path)``
    would refuse ``path`` (a file, a folder of other things holding ``config.json``,
    ``head`` or ``encoders``, a read-only place): training first and failing at the save
    would waste the run. Files of your own in an existing servable directory are kept."""
    try:
        check_save_target(path)
    except (OSError, TypeError, ValueError) as err:
        detail = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise SystemExit(f"error: {option} {path}: {detail}") from None
