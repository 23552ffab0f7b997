"""Small reusable torch modules."""

from quaterion_models.modules.simple import ActivationFromFnName as ActivationFromFnName

__all__ = ["ActivationFromFnName"]
