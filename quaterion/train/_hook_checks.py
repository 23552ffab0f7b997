"""Type checks of what ``TrainableModel``'s configure hooks return."""

from typing import Any, Tuple, Union


def check_hook_result(hook: str, value: Any, allowed: Union[type, Tuple[type, ...]], hint: str):
    """Return ``value`` if it is ``None`` or an instance of ``allowed``, else ``TypeError``."""
    if value is None or isinstance(value, allowed):
        return value
    names = (
        allowed.__name__ if isinstance(allowed, type) else " or ".join(a.__name__ for a in allowed)
    )
    raise TypeError(
        f"TrainableModel.{hook}() must return {names}, got {type(value).__name__}: {hint}"
    )


def check_encoders(value: Any, encoder_type: type):
    """An ``Encoder`` or a dict of them from ``configure_encoders``."""
    if isinstance(value, dict):
        for name, encoder in value.items():
            if not isinstance(encoder, encoder_type):
                raise TypeError(
                    f"TrainableModel.configure_encoders() returned a dict whose entry {name!r} "
                    f"is a {type(encoder).__name__}, expected an Encoder from "
                    "quaterion_models.encoders"
                )
        return value
    return check_hook_result(
        "configure_encoders",
        value,
        encoder_type,
        "return one Encoder or a dict of encoder name -> Encoder",
    )


def check_metrics(value: Any, metric_type: type) -> list:
    """A list of ``AttachedMetric`` from ``configure_metrics`` (``None`` -> ``[]``)."""
    if value is None:
        return []
    if isinstance(value, metric_type):
        return [value]
    if isinstance(value, (list, tuple)):
        for item in value:
            if not isinstance(item, metric_type):
                raise TypeError(
                    "TrainableModel.configure_metrics() must return an AttachedMetric or a list "
                    f"of them, got a list containing {type(item).__name__}; wrap metrics as "
                    "AttachedMetric(name, metric)"
                )
        return list(value)
    raise TypeError(
        "TrainableModel.configure_metrics() must return an AttachedMetric or a list of them, "
        f"got {type(value).__name__}"
    )
