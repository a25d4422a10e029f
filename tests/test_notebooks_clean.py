"""Committed notebooks hold no outputs or run metadata (nbstripout, .gitattributes); executed ones keep theirs."""
import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN_CELL_METADATA = {"execution", "ExecuteTime", "collapsed", "scrolled"}    # what Lab and its kernels add


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_hold_no_outputs_counts_or_run_metadata(path):
    nb = json.loads(path.read_text())
    assert set(nb["metadata"]) <= {"kernelspec", "language_info"}, f"{path}: run metadata {set(nb['metadata'])}"
    assert set(nb["metadata"].get("language_info", {})) <= {"name"}, f"{path}: the kernel's language details"
    for i, cell in enumerate(nb["cells"]):
        assert not cell.get("outputs") and cell.get("execution_count") is None, f"{path}: cell {i} was run"
        assert not RUN_CELL_METADATA & set(cell["metadata"]), f"{path}: cell {i} has run metadata"


def attributes(path: str) -> dict:
    """{attribute: value} of `path` for the nbstripout filter and diff, as git reads .gitattributes."""
    out = subprocess.run(["git", "check-attr", "filter", "diff", "--", path], cwd=ROOT, capture_output=True,
                         text=True)
    if out.returncode:
        pytest.skip(f"git check-attr failed (not a git checkout?): {out.stderr.strip()}")
    return dict(line.split(": ")[1:] for line in out.stdout.splitlines())


def test_gitattributes_strip_notebooks_but_not_the_executed_ones():
    assert attributes("notebooks/01_small_budget.ipynb") == {"filter": "nbstripout", "diff": "ipynb"}
    assert attributes("figures/executed/01_small_budget.ipynb") == {"filter": "unspecified", "diff": "unspecified"}
