"""The README's claim table shows exactly the verdicts the notebooks computed."""
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_claim_table_matches_the_saved_verdicts():
    readme = (ROOT / "README.md").read_text()
    saved = sorted((ROOT / "figures").glob("*_verdict.json"))
    assert saved, "no verdict has been computed by a notebook yet"
    for path in saved:
        record = json.loads(path.read_text())
        row = next((line for line in readme.splitlines() if f"`{record['notebook']}`" in line
                    or f"[`{record['notebook']}`]" in line), None)
        assert row is not None, f"README has no row for {record['notebook']}"
        assert re.search(rf"\|\s*\**{re.escape(record['verdict'])}\**[^|]*\|\s*$", row), (
            f"README row for {record['notebook']} does not show the computed verdict {record['verdict']!r}: {row}")
