from pathlib import Path

import pandas as pd
import pytest

from medlight.studies import figures
from medlight.studies.render import format_summary, latex_table, make_report
from medlight.studies.spec import load_study
from tests.unit.studies.conftest import write_saved_report, write_study


def test_a_report_re_renders_from_its_csvs(saved_report: Path) -> None:
    report = (saved_report / "report.md").read_text()
    for expected in (
        "Rendered from the report's `results.csv`",
        "std: over runs, ddof 1",
        "95% interval",
        "replicates in",
        "acceleration",
        "box_per_case.png",
        "learning_curves.png",
    ):
        assert expected in report, expected
    summary = pd.read_csv(saved_report / "summary.csv")
    assert {"ssim_mean", "ssim_std", "runs"} <= set(summary.columns)
    assert pd.api.types.is_float_dtype(summary["ssim_mean"]) and len(summary) == 4  # 2 variants x 2 conditions
    tests = pd.read_csv(saved_report / "paired_tests.csv")
    assert list(tests["acceleration"]) == [4, 8] and (tests["ci_low"] <= tests["hl_diff"]).all()
    for name in ("box_per_case", "learning_curves"):
        for fmt in ("png", "pdf", "svg"):
            assert (saved_report / f"{name}.{fmt}").stat().st_size > 1000
    assert r"$\pm$" in (saved_report / "summary.tex").read_text()
    assert r"\toprule" in (saved_report / "paired_tests.tex").read_text()


def test_without_curves_the_learning_curves_are_skipped_with_a_note(tmp_path: Path) -> None:
    study = load_study(write_study(tmp_path / "study"))
    report = write_saved_report(tmp_path / "study" / "reports" / "cpu", with_curves=False)
    (report / "learning_curves.png").write_bytes(b"stale")  # from an earlier render: must not stay
    make_report(study, "cpu", runs_root=tmp_path / "no_runs")
    text = (report / "report.md").read_text()
    assert "`curves.csv` is absent" in text and "learning_curves.png" not in text
    assert not (report / "learning_curves.png").exists()


def test_no_runs_and_no_saved_results_is_an_error(tmp_path: Path) -> None:
    study = load_study(write_study(tmp_path / "study"))
    with pytest.raises(SystemExit, match="no finished run"):
        make_report(study, "cpu", runs_root=tmp_path / "no_runs")


def test_a_single_run_shows_no_spread() -> None:
    summary = pd.DataFrame({"variant": ["a", "b"], "runs": [1, 3], "dice_mean": [0.8, 0.7], "dice_std": [None, 0.01]})
    shown = format_summary(summary, ["dice"])
    assert list(shown["dice"]) == ["0.800", "0.700 ± 0.010"]
    assert r"0.700 $\pm$ 0.010" in latex_table(shown) and r"a" in latex_table(shown)


class Captured:
    """Stands in for ``figures.save``: keeps the figure's panels instead of writing files."""

    def __init__(self) -> None:
        self.axes: list = []

    def __call__(self, fig, out: Path) -> Path:
        self.axes = fig.axes
        return out


def test_figures_have_one_panel_per_condition_and_a_legend_on_each(monkeypatch, tmp_path: Path) -> None:
    report = write_saved_report(tmp_path)
    cases, curves = pd.read_csv(report / "results.csv"), pd.read_csv(report / "curves.csv")
    captured = Captured()
    monkeypatch.setattr(figures, "save", captured)
    figures.box_plot(cases, "ssim", ["base", "good"], tmp_path / "box.png", ["acceleration"])
    assert [ax.get_title() for ax in captured.axes] == ["acceleration 4", "acceleration 8"]
    assert all(ax.get_legend() is not None for ax in captured.axes)
    figures.learning_curves(curves, ["base", "good"], tmp_path / "curves.png", ["acceleration"])
    titles = [ax.get_title() for ax in captured.axes]
    assert titles == [
        "val/ssim (acceleration 4)",
        "train/loss (acceleration 4)",
        "val/ssim (acceleration 8)",
        "train/loss (acceleration 8)",
    ]
    for ax in captured.axes:  # every panel has both variants, each in the legend
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["base", "good"]


def test_palette_keeps_many_variants_apart() -> None:
    styles = figures.variant_styles([f"v{i}" for i in range(14)])
    assert len({s["color"] for s in styles.values()}) == 14
    assert len({(s["color"], s["marker"]) for s in styles.values()}) == 14
