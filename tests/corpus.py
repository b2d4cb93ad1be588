"""A small folder corpus about bees, written by tests that need documents to search."""

from __future__ import annotations

from pathlib import Path

BEE_DOCS = {
    "bees.md": "# Honey bees\n\nHoney bees live in colonies with one queen, thousands of "
    "workers and some drones. Workers forage for nectar and pollen.\n\nA worker bee "
    "communicates the direction of flowers with the waggle dance.",
    "honey.txt": "Honey production\n\nBees turn nectar into honey by evaporation and "
    "enzymes. Honey is stored in wax comb cells and capped with wax.",
    "pollination.rst": "Pollination\n===========\n\nBees pollinate flowering plants while they "
    "collect pollen. Many crops such as apples and almonds depend on bee pollination.",
    "guide/hive.html": "<html><head><title>The hive</title><script>var x = 1;</script></head>"
    "<body><h1>The hive</h1><p>The hive is built from wax produced by young worker bees. "
    "Hexagonal cells hold brood, pollen and honey.</p></body></html>",
}


def write_corpus(folder: Path) -> Path:
    """Write the bee documents into `folder` and return it."""
    for name, text in BEE_DOCS.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return folder
