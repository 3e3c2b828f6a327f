"""`twiwatch decode FILE`: an operator checks a new feed with the worker's own decoding and the site's sender rules."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from stream.cli import app
from stream.config import worker_settings
from tests.support.chunks import ROOT

FEEDS = ROOT / "samples" / "feeds"
RULES = json.dumps([{"name": "gateway", "match": {"hl7_app": "EGATEWAY", "hl7_facility": "ICU"}, "kind": "chunk",
                     "bed_component": 2}, {"name": "old", "match": {"hl7_app": "OLDCART"}, "kind": "chunk"}])


def _decode(monkeypatch, tmp_path, name: str, *args: str, rules: str = RULES) -> tuple[int, dict]:
    monkeypatch.setenv("TWIWATCH_SENDERS", rules)
    worker_settings.cache_clear()
    out = tmp_path / "out.json"
    try:
        result = CliRunner().invoke(app, ["decode", str(FEEDS / name), "--json", str(out), *args])
    finally:
        worker_settings.cache_clear()
    return result.exit_code, json.loads(out.read_text())


def test_each_layout_decodes_with_its_shape(monkeypatch, tmp_path):
    code, pcd = _decode(monkeypatch, tmp_path, "pcd01-gateway-chunk.hl7")
    assert code == 0 and pcd["kind"] == "chunk" and pcd["fs"] == 500.0 and pcd["n_samples"] == 500
    assert set(pcd["leads"]) == {"I", "II", "III", "V"} and pcd["lead_marks"] == {"V": "unknown-position"}
    assert pcd["start"] == "2026-12-02T09:30:00+01:00" and pcd["error"] is None
    code, w01 = _decode(monkeypatch, tmp_path, "w01-multiplexed-with-gap.hl7")
    assert code == 0 and [s["n_samples"] for s in w01["segments"]] == [1000, 1000]
    assert [s["start"] for s in w01["segments"]] == ["2026-12-02T09:30:00+01:00", "2026-12-02T09:30:03+01:00"]
    code, ig = _decode(monkeypatch, tmp_path, "pocd-ig-example.xml")
    assert code == 0 and ig["kind"] == "chunk" and ig["fs"] == 125.0 and set(ig["leads"]) == {"I", "II", "III"}


def test_a_dead_letter_exits_2_with_the_reason(monkeypatch, tmp_path):
    code, out = _decode(monkeypatch, tmp_path, "pcd01-chunk-needs-sender-rule.hl7")
    assert code == 2 and out["error"]["code"] == "no-scale" and out["kind"] is None
    # Without the site's rule the same gateway message is a strip of 1 s: refused as too short.
    code, strip = _decode(monkeypatch, tmp_path, "pcd01-gateway-chunk.hl7", rules="")
    assert code == 2 and strip["error"]["code"] == "too-short"
    code, forced = _decode(monkeypatch, tmp_path, "pcd01-gateway-chunk.hl7", "--kind", "chunk", rules="")
    assert code == 0 and forced["kind"] == "chunk"
