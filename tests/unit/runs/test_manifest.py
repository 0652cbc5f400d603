"""The run manifest's git state inside a container image: the commit baked in at build."""

from pathlib import Path

from medlight.runs.manifest import git_state


def test_git_state_outside_a_work_tree_falls_back_to_the_baked_commit(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MEDLIGHT_GIT_COMMIT", "abc123")
    assert git_state(tmp_path) == {"commit": "abc123", "dirty": None}
    monkeypatch.delenv("MEDLIGHT_GIT_COMMIT")
    assert git_state(tmp_path) == {"commit": None, "dirty": None}
    assert git_state()["commit"] is not None  # the source tree itself: git answers
