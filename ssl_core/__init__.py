"""ssl_core: encoders, losses, methods, trainer, data and evaluation for the five papers' claims."""
__version__ = "0.1.0"

from ssl_core import lifetime as _lifetime  # noqa: E402

if _lifetime.in_kernel():          # a kernel ends with papermill or Jupyter (see ssl_core.lifetime)
    _lifetime.watch_parent()
