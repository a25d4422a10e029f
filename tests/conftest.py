"""Shared fixtures: every test gets a private run cache and results store; generated data is shared per session.

Under pytest-xdist (`make unit` runs `-n auto`) each worker gets an equal share of the cores as its torch threads,
and so do the processes it starts (through OMP_NUM_THREADS): two workers of two threads each on two cores would
spend their time in OpenMP's spin-waits, many times slower than one thread each."""
import os

import pytest
import torch

from ssl_core.preflight import usable_cores

WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKERS > 1:
    THREADS = max(1, usable_cores() // WORKERS)
    os.environ["OMP_NUM_THREADS"] = str(THREADS)
    torch.set_num_threads(THREADS)


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory):
    """Generated datasets, shared by every xdist worker (the folder above each worker's basetemp): the data
    cache's writes are atomic, so two workers generating one dataset at once both read a whole file."""
    root = tmp_path_factory.getbasetemp()
    if WORKERS > 1:
        root = root.parent
    (root / "data").mkdir(exist_ok=True)
    return root / "data"


@pytest.fixture
def private_cache(tmp_path, monkeypatch, data_cache):
    """$SSL_CORE_CACHE points at a fresh folder whose data/ is the session's shared data cache."""
    root = tmp_path / "cache"
    root.mkdir()
    (root / "data").symlink_to(data_cache, target_is_directory=True)
    monkeypatch.setenv("SSL_CORE_CACHE", str(root))
    return root


@pytest.fixture(autouse=True)
def private_store(tmp_path, monkeypatch):
    """$SSL_CORE_RESULTS points at a fresh folder: no test reads the committed results store."""
    root = tmp_path / "results"
    monkeypatch.setenv("SSL_CORE_RESULTS", str(root))
    monkeypatch.delenv("SSL_CORE_STORE", raising=False)
    return root
