"""Reading input records, and the errors that say where and how to fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openautoglm.core.records import read_records, require_columns, write_jsonl
from openautoglm.errors import InputDataError


def test_csv_with_bom_quotes_and_unicode(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text('text, label\n"好看, 推荐",positive\n"say ""hi""\nthere",negative\n', encoding="utf-8-sig")
    recs = read_records(path)
    assert recs == [
        {"text": "好看, 推荐", "label": "positive"},
        {"text": 'say "hi"\nthere', "label": "negative"},
    ]


def test_tsv(tmp_path: Path) -> None:
    path = tmp_path / "in.tsv"
    path.write_text('text\tlabel\nhe said "no"\tneg\nok\tpos\n', encoding="utf-8")
    assert read_records(path) == [{"text": 'he said "no"', "label": "neg"}, {"text": "ok", "label": "pos"}]


def test_jsonl_skips_blank_lines_and_keeps_types(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "a", "n": 1}\n\n{"text": "b", "meta": {"k": [1, 2]}}\n', encoding="utf-8")
    assert read_records(path) == [{"text": "a", "n": 1}, {"text": "b", "meta": {"k": [1, 2]}}]


def test_json_array(tmp_path: Path) -> None:
    path = tmp_path / "in.json"
    path.write_text(json.dumps([{"text": "a"}, {"text": "b"}, {"text": "c"}]), encoding="utf-8")
    assert [r["text"] for r in read_records(path)] == ["a", "b", "c"]
    assert [r["text"] for r in read_records(path, limit=2)] == ["a", "b"]


def test_non_utf8_file_names_line_and_byte_and_suggests_iconv(tmp_path: Path) -> None:
    path = tmp_path / "gbk.csv"
    content = "text,label\nfine,positive\n电影很好看,positive\n"
    path.write_bytes(content.encode("gbk"))
    with pytest.raises(InputDataError) as info:
        read_records(path)
    msg = str(info.value)
    byte = len(b"text,label\nfine,positive\n")
    assert "gbk.csv" in msg
    assert "line 3" in msg
    assert f"byte {byte}" in msg
    assert info.value.hint is not None and "iconv" in info.value.hint and "--encoding" in info.value.hint
    # and the suggested encoding works
    assert read_records(path, encoding="gb18030")[1]["text"] == "电影很好看"


def test_csv_row_with_wrong_field_count(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("text,label\na,pos\nb,neg,extra\nc,pos\n", encoding="utf-8")
    with pytest.raises(InputDataError) as info:
        read_records(path)
    msg = str(info.value)
    assert "bad.csv" in msg and "line 3" in msg
    assert "3 fields" in msg and "header has 2" in msg


def test_csv_row_with_too_few_fields(tmp_path: Path) -> None:
    path = tmp_path / "short.csv"
    path.write_text("text,label,id\na,pos,1\nb,neg\n", encoding="utf-8")
    with pytest.raises(InputDataError, match=r"line 3 has 2 fields, the header has 3"):
        read_records(path)


def test_empty_csv(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("", encoding="utf-8")
    with pytest.raises(InputDataError, match="no header row"):
        read_records(path)


def test_bad_jsonl_line(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "a"}\n{"text": \n', encoding="utf-8")
    with pytest.raises(InputDataError, match=r"in.jsonl: line 2: invalid JSON"):
        read_records(path)
    path.write_text('{"text": "a"}\n["not", "an object"]\n', encoding="utf-8")
    with pytest.raises(InputDataError, match=r"line 2: expected a JSON object, got list"):
        read_records(path)


def test_bad_json(tmp_path: Path) -> None:
    path = tmp_path / "in.json"
    path.write_text('{"text": "a"}', encoding="utf-8")
    with pytest.raises(InputDataError, match="JSON array of objects"):
        read_records(path)
    path.write_text('[\n{"text": "a"},\n{oops}\n]', encoding="utf-8")
    with pytest.raises(InputDataError, match="line 3"):
        read_records(path)


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match=r"unknown input format '\.xlsx'") as info:
        read_records(tmp_path / "data.xlsx")
    assert ".csv" in (info.value.hint or "")
    with pytest.raises(InputDataError, match="not found"):
        read_records(tmp_path / "nope.csv")


def test_missing_column_lists_existing_columns() -> None:
    recs = [{"review": "x", "id": "1"}]
    with pytest.raises(InputDataError) as info:
        require_columns(recs, {"text", "review"}, "data.csv")
    msg = str(info.value)
    assert "data.csv" in msg and "missing column 'text'" in msg
    assert "it has: id, review" in msg
    assert "inputs:" in (info.value.hint or "")
    require_columns(recs, {"review"}, "data.csv")  # fine
    require_columns([], {"text"}, "empty.csv")  # nothing to check


def test_write_jsonl_append(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "o.jsonl"
    write_jsonl(path, [{"a": "é"}])
    write_jsonl(path, [{"b": 2}], append=True)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines == ['{"a": "é"}', '{"b": 2}']
    write_jsonl(path, [{"c": 3}])
    assert path.read_text(encoding="utf-8").splitlines() == ['{"c": 3}']
