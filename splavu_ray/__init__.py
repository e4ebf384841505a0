"""splavu_ray: Ray-distributed SPLAVU latent anonymization for video foundation-model features.

Public API::

    adapter = splavu_ray.load_adapter("outputs/run/best_adapter")   # safetensors, no Ray/DeepSpeed
    z = adapter(features)                                            # (B, d) or (B, L, d)
"""

__version__ = "0.1.0"

__all__ = ["AnonymizingAdapter", "load_adapter", "save_adapter", "__version__"]


def __getattr__(name: str):
    # Lazy (PEP 562): `import splavu_ray.data` must not import torch. Ray Data decode actors import
    # the package to unpickle their UDF, and torch's import (1-3 s on 2 cores) delayed every epoch.
    if name in ("AnonymizingAdapter", "load_adapter", "save_adapter"):
        from .models import adapter

        return getattr(adapter, name)
    raise AttributeError(f"module 'splavu_ray' has no attribute {name!r}")
