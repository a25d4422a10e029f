"""Progress bars: tqdm's, switched off by $TQDM_DISABLE everywhere, and saved as plain text by notebooks.

tqdm reads TQDM_DISABLE for its console bars, but its notebook bars (tqdm.auto in Jupyter, and so under
papermill) set `disable` themselves and ignore it; headless runs would fill executed notebooks with bars.
A notebook bar is a widget, and a saved notebook keeps no widgets: reopened, each would read
"Error displaying widget: model not found". So in a Jupyter kernel the bar is shown under a display id,
and when it closes its output becomes its final text line (or nothing, for `leave=False` bars that finished).
"""
from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm

_notebook = sys.modules.get("tqdm.notebook")    # imported by tqdm.auto only inside a Jupyter kernel
if _notebook is not None and issubclass(tqdm, _notebook.tqdm):
    from IPython.display import display as show

    class NotebookBar(_notebook.tqdm):
        """tqdm's notebook bar, whose widget output turns into plain text when the bar closes."""

        def __init__(self, *args, display: bool = True, **kwargs):
            super().__init__(*args, display=False, **kwargs)
            self.handle = None
            if display and not self.disable:
                self.handle, self.displayed = show(self.container, display_id=True), True

        def close(self):
            if self.disable:                         # never shown, or closed already
                return
            super().close()
            if self.handle is not None:
                kept = self.leave or bool(self.total and self.n < self.total)   # as tqdm's: left, or stopped early
                self.handle.update({"text/plain": str(self) if kept else ""}, raw=True)
                self.container.close()

    tqdm = NotebookBar


def progress(*args, disable: bool = False, **kwargs) -> tqdm:
    """`tqdm(*args, **kwargs)`, disabled when `disable` or $TQDM_DISABLE is 1 / true / yes."""
    off = os.environ.get("TQDM_DISABLE", "").strip().lower() in ("1", "true", "yes")
    return tqdm(*args, disable=disable or off, **kwargs)
