"""Reading input records, and the errors that say where and how to fix."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from openautoglm.core.records import (MAX_COLUMNS, MAX_HEADER_BYTES, iter_records, read_records, require_columns,
                                      write_jsonl)
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


def test_non_utf8_byte_offset_counts_the_bom(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbftext\nfine\n" + "坏".encode("gbk") + b"\n")
    with pytest.raises(InputDataError, match=r"line 3 \(byte 13\)"):  # 3 (BOM) + 5 + 5
        read_records(path)


def test_utf16_file_gets_a_utf16_hint(tmp_path: Path) -> None:
    path = tmp_path / "u16.csv"
    path.write_bytes("text\nhi\n".encode("utf-16"))
    with pytest.raises(InputDataError, match=r"line 1 \(byte 0\)") as info:
        read_records(path)
    assert "UTF-16" in (info.value.hint or "") and "iconv" in (info.value.hint or "")


@pytest.mark.parametrize("name, header", [("dup.csv", "text,label, text,id,label"),
                                          ("dup.tsv", "text\tlabel\t text\tid\tlabel")])
def test_repeated_header_names_are_an_error(tmp_path: Path, name: str, header: str) -> None:
    path = tmp_path / name
    sep = "," if name.endswith(".csv") else "\t"
    path.write_text(header + "\n" + sep.join("abcde") + "\n", encoding="utf-8")
    with pytest.raises(InputDataError) as info:
        read_records(path)
    msg = str(info.value)
    assert name in msg
    assert "'text' at columns 1, 3" in msg and "'label' at columns 2, 5" in msg and "'id'" not in msg
    assert "rename" in (info.value.hint or "")


def test_header_only_file_is_an_error_unless_allowed(tmp_path: Path) -> None:
    path = tmp_path / "only_header.csv"
    path.write_text("text,label\n\n", encoding="utf-8")
    with pytest.raises(InputDataError, match=r"only_header.csv: the header is followed by no data rows") as info:
        read_records(path)
    assert "allow_empty=True" in (info.value.hint or "")
    assert read_records(path, allow_empty=True) == []
    assert list(iter_records(path, allow_empty=True)) == []
    assert read_records(path, limit=0) == []  # nothing was asked for


@pytest.mark.parametrize("name, content", [("e.jsonl", "\n\n"), ("e.jsonl", ""), ("e.json", "[]"),
                                           ("e.tsv", "text\tlabel\n")])
def test_files_without_records_are_an_error(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputDataError, match=r"e\.\w+: .*\(0 records\)"):
        read_records(path)
    assert read_records(path, allow_empty=True) == []


def test_one_record_is_enough(tmp_path: Path) -> None:
    path = tmp_path / "one.csv"
    path.write_text("text\nhi\n", encoding="utf-8")
    assert read_records(path) == [{"text": "hi"}]
    assert read_records(path, limit=1) == [{"text": "hi"}]


def _count_reads(monkeypatch: pytest.MonkeyPatch, path: Path) -> list[int]:
    """Bytes read from ``path`` (through Path.open) go into the returned one-element list."""
    read = [0]
    real_open = Path.open

    class CountingFile(io.FileIO):
        def readinto(self, buffer: bytearray) -> int | None:  # type: ignore[override]
            n = super().readinto(buffer)
            read[0] += n or 0
            return n

    def counting_open(self: Path, mode: str = "r", *args: object, **kwargs: object) -> object:
        if self == path and mode == "rb":
            return io.BufferedReader(CountingFile(self, "rb"))
        return real_open(self, mode, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "open", counting_open)
    return read


@pytest.mark.parametrize("chunk, cause", [(b"col,", "not a table"), (b"text,label\r", "CR only"),
                                          (b"a\x00b\x00", "NUL bytes")])
def test_huge_header_line_is_an_error_read_in_bounded_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             chunk: bytes, cause: str) -> None:
    path = tmp_path / "huge.csv"
    size = 8 * MAX_HEADER_BYTES
    path.write_bytes(chunk * (size // len(chunk)))
    read = _count_reads(monkeypatch, path)
    with pytest.raises(InputDataError) as info:
        read_records(path)
    msg = str(info.value)
    assert "huge.csv" in msg and "header line is over 1.0 MiB" in msg and "8.0 MiB file" in msg and cause in msg
    assert 0 < read[0] <= 2 * MAX_HEADER_BYTES  # the other 6+ MiB were never read


def test_cr_only_line_endings_are_named(tmp_path: Path) -> None:
    path = tmp_path / "mac.csv"
    path.write_bytes(b"text,label\rhello,pos\rbye,neg\r")
    with pytest.raises(InputDataError, match="CR-only") as info:
        read_records(path)
    assert "tr '\\r' '\\n'" in (info.value.hint or "")
    path.write_bytes(b"text,label\r\nhello,pos\r\n")  # Windows line endings are fine
    assert read_records(path) == [{"text": "hello", "label": "pos"}]


def test_thousands_of_columns_are_an_error(tmp_path: Path) -> None:
    path = tmp_path / "wide.tsv"
    path.write_text("\t".join(f"w{i}" for i in range(MAX_COLUMNS + 1)) + "\nx\n", encoding="utf-8")
    with pytest.raises(InputDataError, match=rf"wide.tsv: the header has {MAX_COLUMNS + 1:,} columns") as info:
        read_records(path)
    assert "tabs" in (info.value.hint or "")
    path.write_text("\t".join(f"w{i}" for i in range(50)) + "\n" + "\t".join("x" * 50) + "\n", encoding="utf-8")
    assert len(read_records(path)[0]) == 50
