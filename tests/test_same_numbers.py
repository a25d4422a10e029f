"""scripts/same_numbers.py finds a changed number in a checked cell or a verdict file, and ignores timings."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import same_numbers  # noqa: E402


def notebook(checked: str, timing: str) -> dict:
    def cell(source, text):
        return {"cell_type": "code", "source": source, "metadata": {}, "execution_count": 1,
                "outputs": [{"output_type": "stream", "name": "stdout", "text": text}]}
    return {"cells": [cell("print(plan)", timing), cell("# NBVAL_CHECK_OUTPUT\nprint(table)", checked)],
            "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


@pytest.fixture
def repo(tmp_path, monkeypatch):
    (tmp_path / "figures" / "executed").mkdir(parents=True)
    (tmp_path / "figures" / "executed" / "01_x.ipynb").write_text(json.dumps(notebook("simclr 75.3\n", "12.0 s\n")))
    (tmp_path / "figures" / "01_x_verdict.json").write_text(json.dumps({"verdict": "unconverged"}))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git + ["init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(git + ["add", "."], cwd=tmp_path, check=True)
    subprocess.run(git + ["commit", "-qm", "executed"], cwd=tmp_path, check=True)
    monkeypatch.setattr(same_numbers, "ROOT", tmp_path)
    return tmp_path


def test_the_same_numbers_with_other_timings_pass(repo, capsys):
    (repo / "figures" / "executed" / "01_x.ipynb").write_text(json.dumps(notebook("simclr 75.3\n", "13.9 s\n")))
    assert same_numbers.main([]) == 0
    assert "the same numbers" in capsys.readouterr().out


def test_a_changed_number_in_a_checked_cell_fails(repo, capsys):
    (repo / "figures" / "executed" / "01_x.ipynb").write_text(json.dumps(notebook("simclr 75.4\n", "12.0 s\n")))
    assert same_numbers.main([]) == 1
    assert "01_x.ipynb: checked cell 1 of 1 prints other numbers" in capsys.readouterr().out


def test_a_changed_verdict_fails(repo, capsys):
    (repo / "figures" / "01_x_verdict.json").write_text(json.dumps({"verdict": "reproduced"}))
    assert same_numbers.main([]) == 1
    assert "01_x_verdict.json: the verdict differs" in capsys.readouterr().out
