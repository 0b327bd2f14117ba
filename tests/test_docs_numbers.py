"""scripts/docs_numbers.py: the generated numbers in docs/ and README, and the machinery."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load():
    spec = importlib.util.spec_from_file_location("docs_numbers", ROOT / "scripts" / "docs_numbers.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod        # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


dn = _load()


def test_committed_docs_match_the_fast_generators():
    # The quick groups (a few seconds in all); .ci/run checks the slow ones after the suite.
    names = dn.select([], fast=True)
    assert {"catalog", "accuracy", "serving-example", "capacity-example"} <= set(names)
    problems = dn.check(names)
    assert not problems, ("\n".join(problems)
                          + "\nregenerate with: python scripts/docs_numbers.py --write")


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """Two registered groups (one exact, one timing) and a document using them."""
    groups = dict(dn.GROUPS)
    groups["t-exact"] = dn.Group("t-exact", lambda: {"rate": "14.81 req/s", "table": "\n| a |\n"})
    groups["t-time"] = dn.Group("t-time", lambda: {"wall": "about 99 s"}, timing="varies",
                                formats={"wall": r"about \d+ s"})
    monkeypatch.setattr(dn, "GROUPS", groups)
    doc = tmp_path / "README.md"
    doc.write_text("It answers <!-- gen:t-exact.rate -->14.42 req/s<!-- /gen --> here.\n"
                   "<!-- gen:t-exact.table -->\n| old |\n<!-- /gen -->\n"
                   "Suite: <!-- gen:t-time.wall -->about 117 s<!-- /gen -->.\n")
    monkeypatch.setattr(dn, "doc_files", lambda root=None: [doc])
    return doc


def test_check_names_each_stale_region_with_old_and_new(fake):
    problems = dn.check(["t-exact", "t-time"], [fake])
    assert len(problems) == 2
    assert "t-exact.rate" in problems[0] and "'14.42 req/s'" in problems[0] \
        and "'14.81 req/s'" in problems[0]
    assert "t-exact.table" in problems[1] and "| old |" in problems[1]


def test_write_rewrites_only_the_regions_and_check_then_passes(fake):
    assert dn.main(["--check", "t-exact"]) == 1
    assert dn.main(["--write", "t-exact"]) == 0
    assert fake.read_text() == ("It answers <!-- gen:t-exact.rate -->14.81 req/s<!-- /gen --> here.\n"
                                "<!-- gen:t-exact.table -->\n| a |\n<!-- /gen -->\n"
                                "Suite: <!-- gen:t-time.wall -->about 117 s<!-- /gen -->.\n")
    assert dn.main(["--check", "t-exact", "t-time"]) == 0


def test_timing_regions_are_checked_for_format_not_value(fake, monkeypatch):
    # the timing group is never run by --check: a different time passes, a bad format fails
    def boom():
        raise AssertionError("a timing group must not run under --check")
    monkeypatch.setitem(dn.GROUPS, "t-time", dn.Group("t-time", boom, timing="varies",
                                                      formats={"wall": r"about \d+ s"}))
    assert dn.check(["t-time"], [fake]) == []
    fake.write_text("Suite: <!-- gen:t-time.wall -->8 minutes<!-- /gen -->.\n")
    (p,) = dn.check(["t-time"], [fake])
    assert "t-time.wall" in p and "8 minutes" in p and "varies" in p


def test_unknown_and_missing_keys_are_problems(fake):
    fake.write_text("<!-- gen:t-exact.rates -->1<!-- /gen --> <!-- gen:nope.x -->2<!-- /gen -->\n")
    problems = dn.check(["t-exact"], [fake])
    text = "\n".join(problems)
    assert "gen:nope.x: unknown group" in text
    assert "group t-exact has no key rates" in text
    assert "gen:t-exact.rate appears in no document" in text
    assert "gen:t-exact.table appears in no document" in text


def test_formats_of_the_generated_texts():
    assert [dn.pct(x) for x in (0.0325, 0.151, 1.1, 0.9996, -0.018)] == \
        ["3.2 %", "15.1 %", "110 %", "100 %", "-1.8 %"]
    assert [dn.ms(x) for x in (0.0487, 0.1234)] == ["48.7 ms", "123 ms"]
    assert [dn.sec(x) for x in (0.214, 19.28)] == ["0.21 s", "19.3 s"]


def test_unknown_group_is_one_line():
    with pytest.raises(SystemExit, match="unknown group.*accuracyy.*groups: catalog"):
        dn.select(["accuracyy"], fast=False)
