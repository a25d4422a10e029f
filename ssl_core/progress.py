"""Progress bars: tqdm's, switched off by $TQDM_DISABLE everywhere.

tqdm reads TQDM_DISABLE for its console bars, but its notebook bars (tqdm.auto in Jupyter, and so under
papermill) set `disable` themselves and ignore it; headless runs would fill executed notebooks with bars.
"""
from __future__ import annotations

import os

from tqdm.auto import tqdm


def progress(*args, disable: bool = False, **kwargs) -> tqdm:
    """`tqdm(*args, **kwargs)`, disabled when `disable` or $TQDM_DISABLE is 1 / true / yes."""
    off = os.environ.get("TQDM_DISABLE", "").strip().lower() in ("1", "true", "yes")
    return tqdm(*args, disable=disable or off, **kwargs)
