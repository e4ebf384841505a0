"""splavu_ray: Ray-distributed SPLAVU latent anonymization for video foundation-model features.

Public API::

    adapter = splavu_ray.load_adapter("outputs/run/best_adapter")   # safetensors, no Ray/DeepSpeed
    z = adapter(features)                                            # (B, d) or (B, L, d)
"""

__version__ = "0.1.0"

from .adapter import AnonymizingAdapter, load_adapter, save_adapter  # noqa: E402

__all__ = ["AnonymizingAdapter", "load_adapter", "save_adapter", "__version__"]
