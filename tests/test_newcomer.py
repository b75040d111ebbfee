"""What a newcomer hit (issue 23): the closing summary, refused runs, exit codes, quick-looks,
sweeps and the README's commands."""

from __future__ import annotations

import json
import re

from conftest import cli

SMALL = ["catalog=demo", "resolution=120"]  # the demo at 120 m: a whole job in about a second


def test_a_run_ends_with_a_summary(tmp_path):
    out = tmp_path / "out"
    proc = cli([*SMALL, f"output_dir={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    items = sorted(out.glob("monthly-mosaic-*/monthly-mosaic-*.json"))
    assert items, "the demo writes months"
    lines = [line.split("cubemosaic: ", 1)[1] for line in proc.stderr.splitlines() if "summary:" in line]
    for item in items:
        share = json.loads(item.read_text())["properties"]["cubemosaic:clear_share"]
        name = item.parent.name
        (said,) = [line for line in lines if f"summary: {name} " in line]
        percent = float(re.search(r"clear (\d+(?:\.\d)?)%", said).group(1))
        assert percent <= share * 100 < percent + 0.1 or percent == share * 100 == 100, (said, share)
        assert str(out / name / f"{name}.tif") in said
    assert any(re.fullmatch(rf"summary: {len(items)} month\(s\) written in \d+\.\d s", line) for line in lines), lines
    assert f"summary: overview picture {out / 'overview.png'}" in lines and (out / "overview.png").is_file()
    assert f"summary: catalog {out / 'catalog.json'}" in lines
    assert "summary:" in proc.stderr.strip().splitlines()[-1], "the summary closes the run"


def test_clear_percent_never_rounds_up_to_100():
    from cubemosaic.pipeline import clear_percent

    assert clear_percent(0.9958) == "99.5%"
    assert clear_percent(0.99999) == "99.9%"
    assert clear_percent(1.0) == "100%"
    assert clear_percent(0.0) == "0.0%"
