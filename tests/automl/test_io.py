from __future__ import annotations

import pandas as pd
import pytest

from openautoglm.automl.io import align_labels, read_table
from openautoglm.errors import InputDataError


def test_read_table_handles_question_marks_spaces_and_delimiter(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("age; job ;income\n39; clerk; <=50K\n50; ?; >50K\n\n", encoding="utf-8")
    df = read_table(p)
    assert list(df.columns) == ["age", "job", "income"]
    assert len(df) == 2
    assert pd.isna(df.loc[1, "job"])
    assert df.loc[0, "job"] == "clerk"


def test_read_table_errors_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(InputDataError, match="no such file"):
        read_table(tmp_path / "missing.csv")
    bad = tmp_path / "latin.csv"
    bad.write_bytes("name,city\nJos\xe9,S\xe3o Paulo\n".encode("latin-1"))
    with pytest.raises(InputDataError, match="encoding") as err:
        read_table(bad)
    assert "latin.csv" in str(err.value)
    broken = tmp_path / "broken.csv"
    broken.write_text('a,b\n1,2\n3,"4\n5,6,7,8\n')
    with pytest.raises(InputDataError, match="broken.csv"):
        read_table(broken)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(InputDataError, match="empty"):
        read_table(empty)


def test_align_labels_maps_trailing_dots_and_case_onto_training_classes():
    assert align_labels(["<=50K.", ">50K.", " >50k ", "other"], ["<=50K", ">50K"]) == ["<=50K", ">50K", ">50K", "other"]
