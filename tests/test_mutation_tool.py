"""tools/mutations.py stays true to the code: every hand mutation's snippet is found exactly once in the
file it names, so moving code cannot quietly turn a mutation `stale` (its score would then mean less)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("mutations", ROOT / "tools" / "mutations.py")
mutations = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("mutations", mutations)  # its dataclasses look their module up there
_spec.loader.exec_module(mutations)


@pytest.mark.parametrize("m", mutations.MUTATIONS, ids=lambda m: m.name)
def test_the_mutation_applies_to_the_code_as_it_is(m):
    text = (ROOT / "src" / "cnnbench" / m.file).read_text()
    assert text.count(m.old) == 1, f"{m.name}: its snippet is in {m.file} {text.count(m.old)} times"
    assert m.new != m.old
    assert all((ROOT / t).is_file() for t in m.tests)
