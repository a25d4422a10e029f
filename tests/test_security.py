"""Planted pickles in the run cache run no code: every torch.load is weights_only, refused files are recomputed."""
import ast
import os
import re
import shlex
import shutil
import time
from pathlib import Path

import pytest
import torch

import ssl_core
from ssl_core.config import RunConfig
from ssl_core.io import safe_load, sweep_stale_temporaries
from ssl_core.runs import file_sha256, pretrain, run_dir
from ssl_core.train import load_checkpoint, train

TINY = RunConfig(method="simclr", dataset="curated", dataset_size=128, encoder="resnet10", width=8, epochs=1.0,
                 batch_size=64, device="cpu")
TINY_DNC = RunConfig(method="dnc", dataset="curated", dataset_size=96, encoder="resnet10", width=8, epochs=1.0,
                     batch_size=16, proj_hidden=32, proj_dim=16, dnc_clusters=2, device="cpu")


@pytest.fixture(autouse=True)
def _private(private_cache):
    return private_cache


class Payload:
    """Unpickling it runs a shell command that creates `marker`: what a planted checkpoint could do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def plant(path: Path, marker: Path) -> None:
    """Write a torch checkpoint at `path` whose unpickling creates `marker`, and check that it would."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": Payload(marker), "step": 0}, path)
    torch.load(path, weights_only=False)            # what the trainer did before: the payload runs
    assert marker.exists(), "the planted pickle is not live, so the tests below prove nothing"
    marker.unlink()


def clean_sha(cfg: RunConfig) -> str:
    """model.pt's digest of `cfg` trained without interference; the run folder is removed again."""
    sha = pretrain(cfg, progress=False)["model_sha256"]
    shutil.rmtree(run_dir(cfg))
    return sha


def test_every_torch_load_in_ssl_core_is_weights_only():
    for source in Path(ssl_core.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                flags = {k.arg: k.value for k in node.keywords}
                assert isinstance(flags.get("weights_only"), ast.Constant) and flags["weights_only"].value is True, \
                    f"{source}:{node.lineno}: torch.load without weights_only=True"


def test_real_checkpoints_load_under_weights_only_and_resume(tmp_path):
    first = train(TINY, tmp_path, progress=False)
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt", torch.device("cpu"))
    assert ckpt["step"] == first.steps and ckpt["losses"] == first.losses and ckpt["generators"][0].dtype == torch.uint8
    again = train(TINY, tmp_path, progress=False)                   # resumes at the end: nothing retrains
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values()))


@pytest.mark.parametrize("content", ["planted", b"", b"PK\x03\x04 torn zip"], ids=["planted", "empty", "torn"])
def test_safe_load_refuses_removes_and_names_the_file(tmp_path, content):
    path, marker = tmp_path / "checkpoint.pt", tmp_path / "marker"
    if content == "planted":
        plant(path, marker)
    else:
        path.write_bytes(content)
    with pytest.warns(UserWarning, match=re.escape(f"{path} is damaged or holds more than tensors")):
        assert safe_load(path) is None
    assert not path.exists() and not marker.exists()


def test_planted_run_checkpoint_runs_no_code_and_the_run_is_recomputed(tmp_path):
    sha = clean_sha(TINY)
    marker, ckpt = tmp_path / "marker", run_dir(TINY) / "checkpoint.pt"
    plant(ckpt, marker)
    with pytest.warns(UserWarning, match=re.escape(str(ckpt))):
        record = pretrain(TINY, progress=False)
    assert not marker.exists()
    assert record["model_sha256"] == file_sha256(run_dir(TINY) / "model.pt") == sha


def test_planted_dnc_stage_files_run_no_code_and_are_recomputed(tmp_path):
    sha = clean_sha(TINY_DNC)
    d = run_dir(TINY_DNC)
    planted = {d / "base" / "checkpoint.pt": tmp_path / "base", d / "clusters.pt": tmp_path / "clusters"}
    for path, marker in planted.items():
        plant(path, marker)
    with pytest.warns(UserWarning) as caught:
        record = pretrain(TINY_DNC, progress=False)
    said = "\n".join(str(w.message) for w in caught)
    for path, marker in planted.items():
        assert str(path) in said and not marker.exists()
    assert record["model_sha256"] == sha


def test_stale_temporaries_are_swept_and_live_ones_kept(tmp_path):
    stale, live = tmp_path / ".checkpoint.pt.dead.tmp", tmp_path / ".model.pt.busy.tmp"
    for f in (stale, live):
        f.write_bytes(b"half a file")
    hour_ago = time.time() - 3600
    os.utime(stale, (hour_ago, hour_ago))
    sweep_stale_temporaries(tmp_path)
    assert not stale.exists() and live.exists()


def test_opening_a_run_folder_sweeps_its_stale_temporaries():
    d = run_dir(TINY)
    d.mkdir(parents=True)
    stale = d / ".checkpoint.pt.dead.tmp"
    stale.write_bytes(b"half a file")
    os.utime(stale, (time.time() - 3600,) * 2)
    pretrain(TINY, progress=False)
    assert not list(d.glob(".*.tmp"))
