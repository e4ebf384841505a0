"""splavu_ray: Ray-distributed SPLAVU latent anonymization for video foundation-model features."""

__version__ = "0.1.0"
