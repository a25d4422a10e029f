"""$TQDM_DISABLE switches every progress bar off, the notebook bars included; finished bars save as text."""
import nbformat
import pytest
from ipykernel.kernelspec import write_kernel_spec
from nbclient import NotebookClient
from tqdm.notebook import tqdm as notebook_tqdm

import ssl_core.progress as progress_module


@pytest.mark.parametrize("value, off", [("1", True), ("true", True), ("0", False), ("", False)])
def test_tqdm_disable_reaches_every_bar(monkeypatch, value, off):
    monkeypatch.setenv("TQDM_DISABLE", value)
    assert progress_module.progress(range(3)).disable is off
    assert progress_module.progress(range(3), disable=True).disable is True
    monkeypatch.setattr(progress_module, "tqdm", notebook_tqdm)   # what tqdm.auto picks under Jupyter
    assert progress_module.progress(range(3), display=False).disable is off


def test_a_saved_notebook_keeps_finished_bars_as_plain_text(tmp_path, monkeypatch):
    """Run the bars in a real kernel, as Lab does, and read what the notebook would save."""
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    write_kernel_spec(tmp_path / "kernels" / "here")                    # this interpreter, whatever is installed
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    cells = ["from ssl_core.progress import progress\nfor _ in progress(range(3), desc='kept'): pass",
             "bar = progress(total=3, leave=False)\nbar.update(3)\nbar.close()",
             "bar = progress(total=3, desc='stopped', leave=False)\nbar.update(1)\nbar.close()"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(nb, kernel_name="here", timeout=120).execute()
    outputs = [cell.outputs for cell in nb.cells]
    for out in outputs:
        assert [o.output_type for o in out] == ["display_data"]
        assert list(out[0].data) == ["text/plain"], "a widget output would read 'model not found' when reopened"
    kept, finished, stopped = (out[0].data["text/plain"] for out in outputs)
    assert kept.startswith("kept: 100%") and "3/3" in kept
    assert finished == ""                                               # leave=False: gone, as tqdm's bar
    assert stopped.startswith("stopped:  33%") and "1/3" in stopped     # stopped early: kept, as tqdm's bar
