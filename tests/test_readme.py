"""The README: its claim table shows exactly the verdicts the notebooks computed, it stays a front page
(at most 10,000 characters), and its relative links lead to files that exist."""
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


README_LIMIT = 10_000   # characters: the front page stays a front page (issue 29.7)


def test_readme_is_at_most_ten_thousand_characters():
    size = len((ROOT / "README.md").read_text())
    assert size <= README_LIMIT, f"README.md has {size} characters; the limit is {README_LIMIT} (move detail to docs/)"


def _relative_links(markdown: str) -> list[str]:
    """Targets of the markdown links and image links outside fenced code blocks, minus URLs and bare anchors."""
    prose = re.sub(r"^(```|~~~).*?^\1", "", markdown, flags=re.M | re.S)
    prose = re.sub(r"`[^`\n]*`", "", prose)   # inline code is not a link
    targets = re.findall(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", prose)
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:|^#|^//", t, flags=re.I)]


def test_readme_relative_links_point_to_existing_paths():
    links = _relative_links((ROOT / "README.md").read_text())
    assert links, "README.md has no relative links: the link check would check nothing"
    missing = [link for link in links
               if not (ROOT / link.split("#", 1)[0].split("?", 1)[0]).exists()]
    assert not missing, f"README.md links to paths that do not exist in the repository: {missing}"


def test_relative_link_parser():
    text = ("[a](notebooks/x.ipynb) ![b](figures/y.png) [c](https://example.org) [d](#anchor) "
            "[e](docs/F.md#part) `[f](in/code.md)`\n```\n[g](in/fence.md)\n```\n")
    assert _relative_links(text) == ["notebooks/x.ipynb", "figures/y.png", "docs/F.md#part"]


def test_claims_table_is_the_one_written_from_the_verdict_files():
    import sys
    sys.path.insert(0, str(ROOT / "scripts"))
    from claims_table import readme_with_table
    readme = (ROOT / "README.md").read_text()
    assert readme_with_table(readme) == readme, "run `python scripts/claims_table.py --write`"
