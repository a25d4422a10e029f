"""$TQDM_DISABLE switches every progress bar off, the notebook bars included."""
import pytest
from tqdm.notebook import tqdm as notebook_tqdm

import ssl_core.progress as progress_module


@pytest.mark.parametrize("value, off", [("1", True), ("true", True), ("0", False), ("", False)])
def test_tqdm_disable_reaches_every_bar(monkeypatch, value, off):
    monkeypatch.setenv("TQDM_DISABLE", value)
    assert progress_module.progress(range(3)).disable is off
    assert progress_module.progress(range(3), disable=True).disable is True
    monkeypatch.setattr(progress_module, "tqdm", notebook_tqdm)   # what tqdm.auto picks under Jupyter
    assert progress_module.progress(range(3), display=False).disable is off
