"""Where Planetoid files are looked for: a user data folder, not a path beside the repository."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from openautoglm.cli import app
from openautoglm.errors import InputDataError
from openautoglm.graph.data import default_data_root, load_planetoid, user_data_dir


def test_openautoglm_data_names_the_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAUTOGLM_DATA", str(tmp_path))
    assert user_data_dir() == tmp_path
    assert default_data_root() == tmp_path / "planetoid"  # even before the files are there


def test_the_default_is_the_xdg_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAUTOGLM_DATA", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    (tmp_path / "openautoglm" / "planetoid").mkdir(parents=True)
    assert user_data_dir() == tmp_path / "openautoglm"
    assert default_data_root() == tmp_path / "openautoglm" / "planetoid"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert user_data_dir() == tmp_path / "home" / ".local" / "share" / "openautoglm"


def test_a_missing_folder_says_where_to_put_the_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAUTOGLM_DATA", str(tmp_path))
    with pytest.raises(InputDataError) as info:
        load_planetoid("cora")
    text = str(info.value)
    assert str(tmp_path / "planetoid") in text and "OPENAUTOGLM_DATA" in text and "--root" in text


@pytest.mark.parametrize("flag", ["--root", "--data-root"])
def test_graph_train_takes_root(tmp_path: Path, flag: str) -> None:
    result = CliRunner().invoke(app, ["graph", "train", "--dataset", "cora", flag, str(tmp_path / "mine"),
                                      "--seeds", "1", "--no-progress"])
    assert isinstance(result.exception, InputDataError)
    assert f"{tmp_path / 'mine'}: Planetoid folder not found" in str(result.exception)
