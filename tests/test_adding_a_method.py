"""The README's "Adding a method" block, run as written: a toy method registers and trains through the public API."""
import re
from pathlib import Path

import pytest

from ssl_core.methods import METHODS

README = Path(__file__).resolve().parents[1] / "README.md"


def adding_a_method_block() -> str:
    section = README.read_text().split("**Adding a method**", 1)[1]
    return re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)


def test_the_readme_block_registers_and_trains_a_method(private_cache):
    namespace = {}
    try:
        exec(compile(adding_a_method_block(), "README.md", "exec"), namespace)
        assert "energy" in METHODS
        runs = list((private_cache / "runs").iterdir())
        assert len(runs) == 1 and (runs[0] / "model.pt").exists()
    finally:
        METHODS.pop("energy", None)


def test_a_method_must_define_forward(private_cache):
    from ssl_core.config import RunConfig
    from ssl_core.methods.base import Method
    with pytest.raises(NotImplementedError):
        Method(RunConfig())(None, None, None)
