"""The Ray backend of run_grid: a local 2-CPU cluster runs a small grid into the shared cache."""
import threading

import pytest
import torch

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")

from ssl_core.backends import close_pool  # noqa: E402
from ssl_core.config import RunConfig  # noqa: E402
from ssl_core.grid import run_grid  # noqa: E402
from ssl_core.runs import read_record  # noqa: E402

TINY = RunConfig(method="simclr", dataset="curated", dataset_size=256, encoder="resnet18", width=8, epochs=1.0,
                 batch_size=64, device="cpu")
DIVERGES = TINY.replace(lr=1e12, optimizer="sgd")
GRID = [TINY, DIVERGES, TINY.replace(method="dcl")]
EVALS = ("knn",)
ON = "suite/digits"                                         # a small evaluation set: 1,797 images


@pytest.fixture(autouse=True)
def local_ray(monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)       # a local cluster, never someone else's
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                               # as in a 1-CPU Ray task: the same arithmetic
    yield
    torch.set_num_threads(threads)


def metrics(df):
    return {(key, metric): value for key, metric, value in zip(df.key, df.metric, df.value)}


def watch_children(stop: threading.Event, seen: dict) -> None:
    """Record every process this test process starts (recursively) until `stop` is set, under its latest name
    (a process seen between fork and exec still bears its parent's name)."""
    me = psutil.Process()
    while not stop.is_set():
        for p in me.children(recursive=True):
            try:
                if "resource_tracker" not in " ".join(p.cmdline()):   # multiprocessing's, lives with this process
                    seen[p.pid] = (p, p.name())
            except psutil.NoSuchProcess:
                pass
        stop.wait(0.2)


def alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_ray_grid_matches_local_survives_a_failure_and_leaves_no_process(tmp_path, monkeypatch):
    monkeypatch.setenv("SSL_CORE_CACHE", str(tmp_path / "local"))
    local = run_grid(GRID, EVALS, ON, backend="local")
    close_pool()                         # the local workers, kept for the next local grid, are not Ray's to end

    monkeypatch.setenv("SSL_CORE_CACHE", str(tmp_path / "ray"))
    stop, seen = threading.Event(), {}
    watcher = threading.Thread(target=watch_children, args=(stop, seen))
    watcher.start()
    try:
        remote = run_grid(GRID, EVALS, ON, backend="ray", num_cpus=2)
    finally:
        stop.set()
        watcher.join()

    assert [cfg for cfg, _ in remote.attrs["failures"]] == [DIVERGES]
    assert "loss became" in remote.attrs["failures"][0][1]
    assert metrics(remote) == metrics(local) and len(metrics(local)) == 2
    assert list(remote.key) == list(local.key)
    assert all(read_record(cfg) is not None for cfg in (GRID[0], GRID[2]))     # workers wrote this cache
    assert read_record(DIVERGES) is None

    names = {name for _, name in seen.values()}
    assert {"raylet", "gcs_server"} <= names, f"the Ray cluster was not seen: {names}"
    psutil.wait_procs([p for p, _ in seen.values()], timeout=10)
    assert not [name for p, name in seen.values() if alive(p)]


def test_cached_runs_are_read_in_the_driver_and_never_submitted(tmp_path, monkeypatch):
    monkeypatch.setenv("SSL_CORE_CACHE", str(tmp_path))
    first = run_grid([TINY], EVALS, ON, backend="local")
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("a cached run was sent to Ray"))
    again = run_grid([TINY, TINY], EVALS, ON, backend="ray")
    assert metrics(again) == metrics(first) and len(again) == 2 * len(first)


def test_unknown_backend_fails_before_any_compute():
    with pytest.raises(ValueError, match="backend='slurm' is not allowed: choose one of"):
        run_grid([TINY], EVALS, ON, backend="slurm")
