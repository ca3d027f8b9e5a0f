from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from openautoglm.data.dedup import NearDuplicateIndex, duplicate_clusters, exact_key, jaccard, near_duplicate_pairs, shingles
from openautoglm.data.io import ReadStats, iter_records, read_table, write_table
from openautoglm.data.text import clean_whitespace, fix_mojibake, mixed_script_words, normalize_unicode
from openautoglm.errors import InputDataError


# -- text ------------------------------------------------------------------------------
@pytest.mark.parametrize("good", ["café naïve – “quoted” €5", "Ångström, señor, Größe"])
def test_latin_mojibake_is_repaired(good: str) -> None:
    broken = good.encode("utf-8").decode("cp1252", errors="replace") if "\x9d" not in good else good
    broken = "".join(bytes([b]).decode("cp1252") if b not in (0x81, 0x8d, 0x8f, 0x90, 0x9d) else chr(b)
                     for b in good.encode("utf-8"))
    assert broken != good
    assert fix_mojibake(broken) == good


SAMPLES = ["café naïve – “quoted” €5", "Ångström, señor, Größe", "Ça va? Très bien — merci", "São Paulo",
           "The €100 price™", "œuvre • ‘smart’ quotes", "日本語 and café"]


def misread(text: str) -> str:
    """UTF-8 bytes read as cp1252 (the five bytes cp1252 leaves undefined pass through as C1 characters)."""
    return "".join(bytes([b]).decode("cp1252") if b not in (0x81, 0x8d, 0x8f, 0x90, 0x9d) else chr(b)
                   for b in text.encode("utf-8"))


@pytest.mark.parametrize("good", SAMPLES)
def test_latin1_and_double_mojibake_are_repaired(good: str) -> None:
    """UTF-8 read as latin-1, and read as cp1252 twice over (the old hand-written repair missed the latter)."""
    assert fix_mojibake(good.encode("utf-8").decode("latin-1")) == good
    assert fix_mojibake(misread(misread(good))) == good


def test_gbk_mojibake_is_repaired_and_clean_text_untouched() -> None:
    repaired = 0
    for good in ("我们今天去北京", "我们去北京", "服务很好", "价格便宜", "中文文本", "数据清洗工具"):
        try:
            broken = good.encode("utf-8").decode("gbk")  # only some byte strings are valid GBK
        except UnicodeDecodeError:
            continue
        assert fix_mojibake(broken) == good
        repaired += 1
    assert repaired >= 1
    for text in ("选择珠江花园的原因就是方便", "café", "Ângulo é agudo", "plain ascii", "The Mötley Crüe", *SAMPLES):
        assert fix_mojibake(text) == text


def test_whitespace_and_scripts() -> None:
    assert clean_whitespace(" a\u200b b\x07\n\n\tc ") == "a b c"
    assert mixed_script_words("log in to pаypal today") == ["pаypal"]  # Cyrillic а
    assert mixed_script_words("naïve café Москва") == []
    assert normalize_unicode("ＡＢＣ１２", "NFKC") == "ABC12"
    assert normalize_unicode("ＡＢＣ", "NFC") == "ＡＢＣ"


# -- io ----------------------------------------------------------------------------------
def test_read_formats_and_write_round_trip(tmp_path: Path) -> None:
    rows = [{"text": "a, \"quoted\" value", "label": "x"}, {"text": "中文", "label": "y"}]
    for suffix in (".csv", ".jsonl", ".tsv"):
        path = write_table(tmp_path / f"t{suffix}", rows)
        back = read_table(path)
        assert [r["label"] for r in back] == ["x", "y"]
        assert back[1]["text"] == "中文"
    (tmp_path / "a.json").write_text(json.dumps(rows), encoding="utf-8")
    assert read_table(tmp_path / "a.json") == rows


def test_bad_inputs_name_the_place(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match="not found"):
        read_table(tmp_path / "missing.csv")
    with pytest.raises(InputDataError, match="unknown input format"):
        read_table(tmp_path / "x.xlsx")
    broken = tmp_path / "broken.csv"
    broken.write_text("text,label\nok,1\ntoo,many,fields\n", encoding="utf-8")
    with pytest.raises(InputDataError, match="line 3 has 3 fields"):
        read_table(broken)
    bad_json = tmp_path / "b.jsonl"
    bad_json.write_text('{"text": 1}\n{oops\n', encoding="utf-8")
    with pytest.raises(InputDataError, match="line 2: invalid JSON"):
        read_table(bad_json)


def test_non_utf8_strict_and_replace(tmp_path: Path) -> None:
    path = tmp_path / "gbk.csv"
    path.write_bytes("text\nok\n".encode() + "中文\n".encode("gbk"))
    with pytest.raises(InputDataError, match=r"line 3 .*not valid utf-8") as info:
        read_table(path)
    assert "gb18030" in str(info.value)
    stats = ReadStats()
    rows = list(iter_records(path, errors="replace", stats=stats))
    assert len(rows) == 2 and stats.invalid_byte_lines == [3] and stats.invalid_bytes > 0
    assert read_table(path, encoding="gbk")[1]["text"] == "中文"


# -- dedup -------------------------------------------------------------------------------
def test_exact_key_and_shingles() -> None:
    assert exact_key("Hello   World") == exact_key(" hello world ")
    assert exact_key("hello world") != exact_key("hello there")
    assert shingles("a b c d", 3, "word") == {"a b c", "b c d"}
    assert shingles("我们去北京", 2, "auto") == {"我们", "们去", "去北", "北京"}


def _corpus(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(3000)]
    return [" ".join(rng.choice(vocab) for _ in range(40)) for _ in range(n)]


def test_near_duplicates_match_brute_force() -> None:
    rng = random.Random(1)
    base = _corpus(150)
    copies = []
    for text in base[:40]:
        words = text.split()
        for _ in range(rng.randint(0, 4)):
            words[rng.randrange(len(words))] = "zz"
        copies.append(" ".join(words))
    texts = base + copies
    sets = [shingles(t, 3, "word") for t in texts]
    truth = {(j, i) for j in range(len(texts)) for i in range(j) if jaccard(sets[i], sets[j]) >= 0.6}
    found = {(h.index, h.of) for h in near_duplicate_pairs(texts, 0.6, shingle_size=3, unit="word")}
    assert found <= truth  # verified by true Jaccard: no false positives
    assert len(found & truth) >= 0.9 * len(truth) and len(truth) >= 20
    clusters = duplicate_clusters(len(texts), near_duplicate_pairs(texts, 0.6, unit="word"))
    assert all(clusters[j] == clusters[i] == min(clusters[i], i) for j, i in found)
    assert len(set(clusters)) == len(texts) - len(found)


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8, 0.9])
@pytest.mark.parametrize("fp_weight", [0.1, 0.5])
def test_bands_follow_datasketch(threshold: float, fp_weight: float) -> None:
    """Our (b, r) choice is the one datasketch's MinHashLSH makes (its public b and r)."""
    from datasketch import MinHashLSH

    from openautoglm.data.dedup import optimal_bands

    lsh = MinHashLSH(threshold=threshold, num_perm=128, weights=(fp_weight, 1 - fp_weight))
    assert optimal_bands(threshold, 128, fp_weight) == (lsh.b, lsh.r)


def test_threshold_one_finds_exact_shingle_matches() -> None:
    """At threshold 1.0 (one band, which MinHashLSH refuses) only identical shingle sets pair up."""
    index = NearDuplicateIndex(1.0, unit="word")
    assert (index.bands, index.rows) == (1, 128)
    hits = index.add(["the cat sat on the mat today", "The cat sat on the mat, today!", "the dog sat on the mat"])
    assert hits[0] is None and hits[1] is not None and hits[1].of == 0 and hits[2] is None


def test_clusters_are_connected_components() -> None:
    from openautoglm.data.dedup import DuplicateHit

    hits = [DuplicateHit(5, 3, 0.9), DuplicateHit(3, 1, 0.9), DuplicateHit(4, 2, 0.8), DuplicateHit(7, 6, 1.0)]
    assert duplicate_clusters(8, hits) == [0, 1, 2, 1, 2, 1, 6, 6]  # 5-3-1 chain joins through 3
    assert duplicate_clusters(3, []) == [0, 1, 2] and duplicate_clusters(0, []) == []


def test_add_all_reports_every_pair_and_counts_documents() -> None:
    index = NearDuplicateIndex(0.6, unit="word")
    texts = ["alpha beta gamma delta epsilon", "alpha beta gamma delta epsilon zeta",
             "alpha beta gamma delta epsilon", "something else entirely here now"]
    pairs = {(h.index, h.of) for h in index.add_all(texts[:2])} | {(h.index, h.of) for h in index.add_all(texts[2:])}
    assert pairs == {(1, 0), (2, 0), (2, 1)} and len(index) == 4
    assert index.unit_for(["中文文本"]) == "word"  # settled by the first batch


def test_incremental_index_keeps_first_and_handles_chinese() -> None:
    index = NearDuplicateIndex(0.7, unit="auto")
    texts = ["这家酒店的早餐很丰富，服务也非常周到，下次还会再来住", "这家酒店的早餐很丰富，服务也非常周到，下次还会再来住！",
             "手机屏幕很清晰，电池续航也不错，就是有点重"]
    hits = index.add(texts)
    assert hits[0] is None and hits[1] is not None and hits[1].of == 0 and hits[2] is None
    assert index.add(["手机屏幕很清晰，电池续航也不错，就是有点重。"])[0].of == 2


# -- language id ---------------------------------------------------------------------------
def test_language_detection_with_script_rules() -> None:
    from openautoglm.data.langid import LanguageDetector, script_language

    det = LanguageDetector()
    assert det.detect("The weather is lovely today and we are going out.")[0] == "en"
    assert det.detect("Il pleut depuis trois jours sur toute la région.")[0] == "fr"
    assert det.detect("外壳材质略粗糙；外壳厚度较薄；单声道的喇叭很不人性化")[0] == "zh"  # the raw model says "mk"
    assert det.detect("この映画は長すぎて少し退屈でした。")[0] == "ja"
    assert det.detect("12345 !!!") == ("und", 0.0)
    assert script_language("预装的软件太多，vista不好") == "zh"
    assert script_language("vista basic 不好") is None  # Latin letters dominate: the model decides
    assert script_language("hello world") is None
    with pytest.raises(Exception, match="unknown language-id engine"):
        LanguageDetector("cld3")


def test_parquet_needs_an_engine_or_reads(tmp_path: Path) -> None:
    import importlib.util

    pd = pytest.importorskip("pandas")
    path = tmp_path / "t.parquet"
    if importlib.util.find_spec("pyarrow") or importlib.util.find_spec("fastparquet"):
        pd.DataFrame({"text": ["a", "b"], "label": [1, 0]}).to_parquet(path)
        assert [r["text"] for r in read_table(path)] == ["a", "b"]
    else:
        path.write_bytes(b"PAR1")
        with pytest.raises(InputDataError, match="Parquet needs pandas with pyarrow"):
            read_table(path)
