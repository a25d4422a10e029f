"""Shared fixtures: every test gets a private run cache; generated data is shared per session."""
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
