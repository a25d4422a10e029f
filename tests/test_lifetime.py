"""A kernel or grid worker ends with its parent and writes nothing after it; a notebook killed with its process
group resumes to the results of an uninterrupted run."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest

from ssl_core import lifetime
from ssl_core.io import write_json

ROOT = Path(__file__).resolve().parents[1]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().rsplit(")", 1)[1].split()[0] == "Z")   # zombies are gone


def test_a_watching_process_exits_with_its_parent(tmp_path):
    grandchild = textwrap.dedent("""
        import time
        from ssl_core.lifetime import watch_parent
        watch_parent()
        time.sleep(60)
    """)
    middle = (f"import subprocess, sys, time\n"
              f"p = subprocess.Popen([sys.executable, '-c', {grandchild!r}])\n"
              f"print(p.pid, flush=True)\ntime.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", middle], stdout=subprocess.PIPE, text=True)
    pid = int(proc.stdout.readline())
    time.sleep(3)                                          # the grandchild imports ssl_core and starts watching
    assert alive(pid)
    proc.kill()
    proc.wait()
    deadline = time.time() + 5
    while alive(pid) and time.time() < deadline:
        time.sleep(0.05)
    assert not alive(pid), "the grandchild outlived its parent"


def test_a_process_whose_parent_died_before_it_watched_exits_at_once():
    """A grid worker still importing torch when its kernel is killed is re-parented before it starts watching."""
    started = time.time()
    code = "import time; from ssl_core.lifetime import watch_parent; watch_parent(parent=-1); time.sleep(60)"
    done = subprocess.run([sys.executable, "-c", code], timeout=50, capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (1, "")          # the watcher's exit, not an error, nor the 60 s sleep
    assert time.time() - started < 50


def test_an_orphaned_process_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(lifetime, "_parent", os.getppid() + 12345)      # as if the watched parent had died
    with pytest.raises(RuntimeError, match="has died"):
        write_json({"a": 1}, tmp_path / "x.json")
    assert not list(tmp_path.iterdir())                                  # neither the file nor its temporary


def kernel_pids(cache: Path) -> list[int]:
    """Processes whose environment points at `cache` (the notebook's kernel and its workers)."""
    pids = []
    for env in Path("/proc").glob("[0-9]*/environ"):
        try:
            if f"SSL_CORE_CACHE={cache}".encode() in env.read_bytes().split(b"\0"):
                pids.append(int(env.parent.name))
        except OSError:
            continue
    return [p for p in pids if alive(p)]


def checked_outputs(path: Path) -> list[str]:
    nb = nbformat.read(path, 4)
    return ["".join(o.get("text", "") for o in c.outputs if o.get("name") == "stdout") for c in nb.cells
            if c.cell_type == "code" and "NBVAL_CHECK_OUTPUT" in c.source]          # warnings (stderr) aside


def papermill(notebook: str, out: Path, cache: Path, results: Path) -> subprocess.Popen:
    env = dict(os.environ, SSL_CORE_CACHE=str(cache), SSL_CORE_RESULTS=str(results), TQDM_DISABLE="1")
    return subprocess.Popen([str(Path(sys.executable).with_name("papermill")), "--cwd", str(ROOT / "notebooks"),
                             "-p", "preset", "smoke", str(ROOT / "notebooks" / notebook), str(out)],
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_killed_notebook_leaves_no_kernel_and_resumes_to_the_same_results(tmp_path, data_cache):
    notebook = "05_mlp_projector.ipynb"
    caches = {}
    for name in ("killed", "clean"):
        caches[name] = tmp_path / name
        caches[name].mkdir()
        (caches[name] / "data").symlink_to(data_cache, target_is_directory=True)
    proc = papermill(notebook, tmp_path / "killed.ipynb", caches["killed"], tmp_path / "results-killed")
    runs = caches["killed"] / "runs"
    deadline = time.time() + 600
    while not list(runs.glob("*/checkpoint.pt")) + list(runs.glob("*/run.json")) and time.time() < deadline:
        assert proc.poll() is None, "papermill ended before any run trained"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)                   # the whole process group, as a user's kill -9 -- -PGID
    proc.wait()
    deadline = time.time() + 3
    while kernel_pids(caches["killed"]) and time.time() < deadline:
        time.sleep(0.1)
    assert not kernel_pids(caches["killed"]), "the kernel (or a worker) outlived papermill"
    for name in ("killed", "clean"):                      # the rerun resumes; the clean run never stopped
        rerun = papermill(notebook, tmp_path / f"{name}.ipynb", caches[name], tmp_path / f"results-{name}")
        assert rerun.wait(timeout=1200) == 0
    assert checked_outputs(tmp_path / "killed.ipynb") == checked_outputs(tmp_path / "clean.ipynb")
    assert json.loads((ROOT / "figures" / "smoke" / "05_mlp_projector_verdict.json").read_text())["preset"] == "smoke"
