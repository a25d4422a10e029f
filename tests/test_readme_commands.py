"""Every command the README shows, run as written (a smoke-sized variant where the real one takes hours).

`make` targets run as a dry run (`make -n`: the target exists and its recipe expands; `make test` itself is what
CI runs); papermill lines run in a scratch folder that links the notebooks, so their outputs land there; a line
that trains for long gets the smoke preset appended, papermill's last `-p` of a name winning.
"""
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BIN = Path(sys.executable).parent
SMOKE = ["-p", "preset", "smoke", "-p", "budget", "1"]   # appended to a papermill line that sets its own budget


def commands() -> list[str]:
    """The README's shell commands: each line of its bash blocks and each inline `make ...` / `python ...`."""
    lines = [line.split("  #")[0].strip() for block in re.findall(r"```bash\n(.*?)```", README, re.S)
             for line in block.splitlines()]
    inline = re.findall(r"`((?:make|python) [^`]+)`", README)
    return list(dict.fromkeys(line for line in lines + inline if line))


def test_the_readme_shows_the_commands_this_file_runs():
    found = commands()
    assert {"make figures", "make test", "make evidence", "make audit", "make lab", "make bench",
            "make audit N=3"} <= set(found), found
    assert sum(c.startswith("papermill ") for c in found) == 2, found
    assert all(c.split()[0] in ("make", "papermill", "python") for c in found), found


@pytest.mark.parametrize("command", [c for c in commands() if c.startswith("make ")])
def test_make_commands_name_real_targets(command):
    proc = subprocess.run(["make", "-n", *shlex.split(command)[1:]], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_make_evidence_in_parts_names_the_notebook():
    proc = subprocess.run(["make", "-n", "evidence", "PARTS=notebooks/01_small_budget.ipynb"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "notebooks/01_small_budget.ipynb" in proc.stdout
    assert "02_curation_gap" not in proc.stdout


def test_the_conda_environment_installs_what_make_installs():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    extras = re.search(r'-e "?\.\[([^\]]+)\]', (ROOT / "Makefile").read_text()).group(1)
    assert f"-e .[{extras}]" in pip and "-c constraints.txt" in pip


def test_papermill_commands_run_as_written(tmp_path, private_cache):
    """In the README's order, from one folder with one cache, as a user types them: a later command reuses the
    runs an earlier one trained (the temperature panel and the regime check at the small batch)."""
    (tmp_path / "notebooks").symlink_to(ROOT / "notebooks")
    (tmp_path / "nb").symlink_to(ROOT / "notebooks")
    env = dict(os.environ, SSL_CORE_CACHE=str(private_cache), PYTHONPATH=str(ROOT), TQDM_DISABLE="1")
    for command in [c for c in commands() if c.startswith("papermill ")]:
        argv = shlex.split(command)
        argv = [str(BIN / "papermill"), *argv[1:], *(SMOKE if "budget" in argv else [])]
        (tmp_path / "out.ipynb").unlink(missing_ok=True)
        proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, env=env)
        assert proc.returncode == 0, f"{command}\n{proc.stderr[-3000:]}"
        out = (tmp_path / "out.ipynb").read_text()
        assert "verdict claim 4" in out and "Traceback" not in out, command
    assert len(list((tmp_path / "figures").rglob("04a_accuracy_vs_batch_size.png"))) == 2   # beside, not into the project
