"""ssl_core: encoders, losses, methods, trainer, data and evaluation for the five papers' claims."""
import os

# Idle OpenMP threads sleep instead of spinning. On a shared 2-core machine, torch's spinning
# threads made a training step ~20x slower (9 vs 192 images/s measured); effective only when
# set before torch is first imported, which is why it is here and in the Makefile.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
