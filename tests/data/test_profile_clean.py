from __future__ import annotations

import json
from pathlib import Path

import pytest

from openautoglm.data.clean import CleanConfig, clean
from openautoglm.data.io import read_table, write_table
from openautoglm.data.profile import profile
from openautoglm.errors import InputDataError, OpenAutoGLMError

LONG = "the quick brown fox jumps over the lazy dog near the river bank on a sunny day"
ROWS = [
    {"text": "hello   world, mail me at a@example.com", "label": "pos"},
    {"text": "Hello world, mail me at a@example.com", "label": "pos"},   # exact dup after casefold/space
    {"text": "我的手机是13812345678，身份证11010519491231002X", "label": "neg"},
    {"text": "cafÃ© is nice", "label": "pos"},                          # mojibake
    {"text": LONG, "label": "pos"},
    {"text": LONG + "!", "label": "pos"},                                  # near dup
    {"text": "Bonjour tout le monde, comment allez-vous aujourd'hui", "label": "neg"},
    {"text": "  \u200b ", "label": "neg"},                                 # empty after cleanup
    {"text": "log in to pаypal now\x07", "label": "neg"},                  # mixed script + control char
]


@pytest.fixture()
def table(tmp_path: Path) -> Path:
    return write_table(tmp_path / "in.jsonl", ROWS)


def test_profile_counts_and_report(table: Path, tmp_path: Path) -> None:
    result = profile(table, label_column="label")
    s = result.stats
    assert s["rows"] == 9 and s["exact_duplicates"] == 1 and s["near_duplicates"] == 1 and s["empty"] == 1
    assert s["encoding"]["mojibake_rows"] == 1 and s["encoding"]["mixed_script_rows"] == 1
    assert s["encoding"]["control_char_rows"] == 1  # the empty row is counted as empty only
    assert s["labels"] == {"pos": 5, "neg": 4} and s["imbalance_ratio"] == 1.25
    assert s["pii"] == {"email": 2, "cn_mobile": 1, "cn_id": 1} and s["rows_with_pii"] == 3
    assert s["languages"]["en"] >= 4 and s["languages"]["zh"] == 1 and s["languages"]["fr"] == 1
    paths = result.save(tmp_path / "prof")
    html = paths["html"].read_text(encoding="utf-8")
    assert "data:image/png;base64," in html and "imbalance ratio" in html
    assert "a@example.com" not in html and "13812345678" not in html  # examples are redacted
    assert json.loads(paths["json"].read_text(encoding="utf-8"))["stats"]["rows"] == 9


def test_profile_counts_invalid_bytes(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes("text\nfine\n".encode() + "坏的".encode("gbk") + b"\n")
    s = profile(path, languages=False, near_dup=False).stats
    assert s["encoding"]["invalid_byte_lines"] == 1 and s["encoding"]["replacement_chars_rows"] == 1


def test_profile_unknown_column(table: Path) -> None:
    with pytest.raises(InputDataError, match="no column 'sentence'"):
        profile(table, text_column="sentence")


def test_clean_end_to_end_with_audit(table: Path, tmp_path: Path) -> None:
    out = tmp_path / "clean.csv"
    result = clean(table, out, keep_languages=["en", "zh"], pii="mask")
    kept = read_table(out)
    texts = [r["text"] for r in kept]
    assert texts[:3] == ["hello world, mail me at [EMAIL]", "我的手机是[CN_MOBILE]，身份证[CN_ID]", "café is nice"]
    assert len(kept) == 5 and result.rows_in == 9 and result.rows_out == 5
    audit = [json.loads(line) for line in (tmp_path / "clean.csv.audit.jsonl").read_text(encoding="utf-8").splitlines()]
    reasons = {(a["row"], a["reason"]) for a in audit if a["action"] == "drop"}
    assert reasons == {(1, "exact_duplicate"), (5, "near_duplicate"), (6, "language"), (7, "empty")}
    assert [a["row"] for a in audit] == sorted(a["row"] for a in audit)
    assert "13812345678" not in json.dumps(audit, ensure_ascii=False)
    assert result.pii == {"email": 2, "cn_mobile": 1, "cn_id": 1}


def test_clean_in_memory_options() -> None:
    result = clean(ROWS, pii="pseudonymize", near_dedup=False, dedup=False, fix_encoding=False, drop_empty=False)
    assert result.rows_out == len(ROWS)
    assert result.records[0]["text"].startswith("hello world, mail me at [EMAIL_")
    assert result.records[3]["text"] == "cafÃ© is nice"
    with pytest.raises(OpenAutoGLMError, match="unknown PII mode"):
        clean(ROWS, pii="erase")
    with pytest.raises(OpenAutoGLMError, match="outside"):
        CleanConfig(near_threshold=1.5).validate()


def test_clean_audit_defaults_to_the_output_name_plus_audit_jsonl(table: Path, tmp_path: Path) -> None:
    # docs/data.md and `data clean --help`: <output>.audit.jsonl, so out/clean.csv → out/clean.csv.audit.jsonl
    for name in ("clean.csv", "clean.jsonl"):
        result = clean(table, tmp_path / "out" / name, near_dedup=False)
        expected = tmp_path / "out" / f"{name}.audit.jsonl"
        assert result.audit == expected and result.summary()["audit"] == str(expected)
        assert expected.read_text(encoding="utf-8").count("\n") >= 3
    assert not (tmp_path / "out" / "clean.audit.jsonl").exists()
    custom = tmp_path / "elsewhere.jsonl"
    assert clean(table, tmp_path / "o.csv", audit=custom).audit == custom and custom.is_file()


def test_clean_header_only_input(tmp_path: Path) -> None:
    src = tmp_path / "only_header.csv"
    src.write_text("text,label\n", encoding="utf-8")
    with pytest.raises(InputDataError, match="no data rows"):
        clean(src, tmp_path / "o.csv")
    assert not (tmp_path / "o.csv").exists() and not (tmp_path / "o.csv.audit.jsonl").exists()
    result = clean(src, tmp_path / "o2.csv", allow_empty=True)
    assert (result.rows_in, result.rows_out) == (0, 0)
    assert (tmp_path / "o2.csv").is_file() and (tmp_path / "o2.csv.audit.jsonl").is_file()


def test_clean_keeps_partial_output_of_a_file_that_fails_midway(tmp_path: Path) -> None:
    src = tmp_path / "bad.csv"
    src.write_text("text\nfirst row\nsecond,row\n", encoding="utf-8")
    with pytest.raises(InputDataError, match="line 3"):
        clean(src, tmp_path / "o.csv", near_dedup=False)
    assert (tmp_path / "o.csv.audit.jsonl").is_file()  # rows were read: what happened is kept
