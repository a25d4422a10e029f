"""ssl_core: encoders, losses, methods, trainer, data and evaluation for the five papers' claims."""
__version__ = "0.1.0"
