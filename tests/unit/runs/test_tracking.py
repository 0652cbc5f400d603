import csv
from pathlib import Path

from medlight.runs.tracking import Tracking, build_loggers


def rows(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_csv_metrics_survive_a_resume_and_the_header_can_grow(tmp_path: Path) -> None:
    first = build_loggers(tmp_path, Tracking(wandb="disabled"))[0]
    first.log_metrics({"train/loss": 1.0}, step=0)
    first.save()
    second = build_loggers(tmp_path, Tracking(wandb="disabled"))[0]  # the resumed run
    second.log_metrics({"train/loss": 0.5}, step=1)
    second.log_metrics({"val/dice": 0.7}, step=1)
    second.save()
    table = rows(tmp_path / "metrics.csv")
    assert [r["step"] for r in table] == ["0", "1", "1"]
    assert table[0]["train/loss"] == "1.0" and table[2]["val/dice"] == "0.7"


def test_wandb_offline_needs_no_account_and_no_network(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    loggers = build_loggers(tmp_path, Tracking(wandb="offline", project="tests"))
    assert [type(x).__name__ for x in loggers] == ["ResumableCSVLogger", "WandbLogger"]
    loggers[1].log_metrics({"val/dice": 0.5}, step=0)
    loggers[1].experiment.finish()
    assert list((tmp_path / "wandb").glob("offline-run-*"))
    run_id = (tmp_path / "wandb_run_id.txt").read_text().strip()
    again = build_loggers(tmp_path, Tracking(wandb="offline", project="tests"))[1]
    assert again.version == run_id  # a resumed run continues the same dashboard run
    again.experiment.finish()
