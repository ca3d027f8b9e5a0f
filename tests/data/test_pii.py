from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from openautoglm.data.pii import PIIDetector, cn_id_check_char, cn_id_valid, luhn_valid
from openautoglm.errors import OpenAutoGLMError

HERE = Path(__file__).resolve().parent
TESTSET = HERE / "pii_testset.jsonl"
REPO = HERE.parents[1]


def test_cn_id_checksum_date_and_region() -> None:
    assert cn_id_valid("11010519491231002X")  # the GB 11643 textbook example
    assert cn_id_valid("11010519491231002x")
    assert not cn_id_valid("110105194912310021")  # wrong check character
    assert not cn_id_valid("110105194913310026")  # month 13
    assert not cn_id_valid("990105194912310029")  # no such province
    body = "44030519900307123"
    assert cn_id_valid(body + cn_id_check_char(body))


def test_luhn() -> None:
    assert luhn_valid("4111111111111111")
    assert luhn_valid("79927398713")
    assert not luhn_valid("4111111111111112")
    assert not luhn_valid("4111a11111111111")


@pytest.mark.parametrize("text, kind, value", [
    ("mail me: wei.zhang+news@mail.example.cn.", "email", "wei.zhang+news@mail.example.cn"),
    ("我的手机13812345678请回电", "cn_mobile", "13812345678"),
    ("call +86 138 1234 5678 now", "cn_mobile", "+86 138 1234 5678"),
    ("Office: +44 20 7946 0958.", "phone", "+44 20 7946 0958"),
    ("US line (212) 555-0100", "phone", "(212) 555-0100"),
    ("座机010-88886666", "phone", "010-88886666"),
    ("身份证号11010519491231002X。", "cn_id", "11010519491231002X"),
    ("card 4111 1111 1111 1111 exp 09/27", "bank_card", "4111 1111 1111 1111"),
    ("卡号6222021234567890128已绑定", "bank_card", "6222021234567890128"),
    ("host 192.168.0.12 down", "ip", "192.168.0.12"),
    ("v6 2001:db8::ff00:42:8329 ok", "ip", "2001:db8::ff00:42:8329"),
    ("访问https://example.org/a?b=1了解详情", "url", "https://example.org/a?b=1"),
    ("see www.example.com/x).", "url", "www.example.com/x"),
])
def test_finds_each_type(text: str, kind: str, value: str) -> None:
    found = PIIDetector().find(text)
    assert [(m.type, m.value) for m in found] == [(kind, value)]
    assert text[found[0].start:found[0].end] == value


@pytest.mark.parametrize("text", [
    "ID 110105194912310021 failed",          # bad check character
    "card 4111 1111 1111 1112 declined",     # fails Luhn
    "version 1.2.3.4 released", "版本1.2.3.4更新",
    "time 12:30:45 and 999.1.1.1", "订单号66541925312260已发货",
    "price ¥1,299.00 on 2024-05-01", "room 1203, code 845 221",
])
def test_hard_negatives(text: str) -> None:
    assert PIIDetector().find(text) == []


def test_redaction_modes_and_stable_pseudonyms() -> None:
    det = PIIDetector(salt="s1")
    text = "a@example.com wrote to b@example.com and a@example.com"
    assert det.redact(text) == "[EMAIL] wrote to [EMAIL] and [EMAIL]"
    pseudo = det.redact(text, "pseudonymize").split()
    assert pseudo[0] == pseudo[-1] != pseudo[3]
    assert "example" not in " ".join(pseudo)
    assert PIIDetector(salt="s2").redact(text, "pseudonymize").split()[0] != pseudo[0]
    with pytest.raises(OpenAutoGLMError):
        det.redact(text, "shred")


def test_type_selection_and_ner_hook() -> None:
    text = "张伟 works at Acme Corp, mail zw@example.com"
    det = PIIDetector(["email"], ner=lambda t: [(0, 2, "person"), (12, 21, "org")])
    assert [(m.type, m.source) for m in det.find(text)] == [("person", "ner"), ("org", "ner"), ("email", "pattern")]
    assert det.redact(text) == "[PERSON] works at [ORG], mail [EMAIL]"
    with pytest.raises(OpenAutoGLMError, match="unknown PII type"):
        PIIDetector(["ssn"])


def test_spacy_adapter_with_a_duck_typed_pipeline() -> None:
    from types import SimpleNamespace

    from openautoglm.data.pii import spacy_ner

    def nlp(text: str) -> SimpleNamespace:  # the part of spaCy's Doc API the adapter uses
        ents = [SimpleNamespace(start_char=0, end_char=10, label_="PERSON"),
                SimpleNamespace(start_char=20, end_char=24, label_="GPE"),
                SimpleNamespace(start_char=28, end_char=32, label_="ORG")]
        return SimpleNamespace(ents=ents)

    det = PIIDetector(["email"], ner=spacy_ner(nlp))
    assert det.redact("Mary Smith flew to Oslo for ACME.") == "[PERSON] flew to Oslo for [ORG]."


def test_overlaps_resolved_by_priority() -> None:
    # an 18-digit resident ID also passes the bank-card and phone patterns' shape: reported once, as cn_id
    found = PIIDetector().find("号码 11010519491231002X")
    assert [m.type for m in found] == ["cn_id"]


def test_testset_recall_on_structured_types() -> None:
    rows = [json.loads(line) for line in TESTSET.read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 300 and {r["lang"] for r in rows} == {"zh", "en"}
    det = PIIDetector()
    tp, fn, fp = Counter(), Counter(), Counter()
    for row in rows:
        gold = {(s["type"], s["start"], s["end"]) for s in row["spans"]}
        pred = {(m.type, m.start, m.end) for m in det.find(row["text"])}
        for g in gold:
            (tp if g in pred else fn)[g[0]] += 1
        for p in pred - gold:
            fp[p[0]] += 1
    for kind in ("email", "url", "ip", "cn_id", "bank_card", "cn_mobile", "phone"):
        assert tp[kind] >= 20, kind
        assert tp[kind] / (tp[kind] + fn[kind]) >= 0.95, kind
        assert tp[kind] / (tp[kind] + fp[kind]) >= 0.9, kind


def test_testset_is_reproducible_and_valid() -> None:
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import data_pii_testset as gen
    finally:
        sys.path.remove(str(REPO / "bench"))
    rows = gen.generate()
    stored = [json.loads(line) for line in TESTSET.read_text(encoding="utf-8").splitlines()]
    assert rows == stored
    for row in rows:
        for span in row["spans"]:
            assert row["text"][span["start"]:span["end"]] == span["value"]
            if span["type"] == "cn_id":
                assert cn_id_valid(span["value"])
            if span["type"] == "bank_card":
                assert luhn_valid(span["value"].replace(" ", "").replace("-", ""))


def test_package_import_is_light() -> None:
    code = ("import sys, openautoglm.data as d; d.PIIDetector; d.clean_whitespace;"
            "print(sorted(m for m in ('numpy','torch','sklearn','pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_public_name_resolves() -> None:
    import openautoglm.data as data

    assert all(getattr(data, name) is not None for name in data.__all__)
    with pytest.raises(AttributeError):
        data.no_such_thing  # noqa: B018
