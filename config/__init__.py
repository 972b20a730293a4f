"""Configuration: read once, explicitly, by the composition root (``Settings.from_env()``)."""

from config.settings import Settings

__all__ = ["Settings"]
