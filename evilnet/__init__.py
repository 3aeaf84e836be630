"""EvilNet: real-time social-media analytics pipeline."""

__version__ = "0.1.0"
