"""Shared fixtures: every test gets a private run cache and results store; generated data is shared per session."""
import pytest


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


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
