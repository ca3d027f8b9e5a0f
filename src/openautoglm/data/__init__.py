"""Training-data optimization toolkit: profile, clean, PII, label issues, balance, active
learning, drift, annotation QC and LLM pre-labelling.

``import openautoglm.data`` is cheap: names load on first access (numpy, scikit-learn,
pandas, torch are imported only by the functions that need them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

_LAZY = {
    # reading / writing
    "read_table": "openautoglm.data.io",
    "iter_records": "openautoglm.data.io",
    "write_table": "openautoglm.data.io",
    # PII
    "PIIDetector": "openautoglm.data.pii",
    "PIIMatch": "openautoglm.data.pii",
    "PII_TYPES": "openautoglm.data.pii",
    "spacy_ner": "openautoglm.data.pii",
    # text repairs, language id, dedup
    "fix_mojibake": "openautoglm.data.text",
    "clean_whitespace": "openautoglm.data.text",
    "LanguageDetector": "openautoglm.data.langid",
    "NearDuplicateIndex": "openautoglm.data.dedup",
    "near_duplicate_pairs": "openautoglm.data.dedup",
    # capabilities
    "profile": "openautoglm.data.profile",
    "ProfileResult": "openautoglm.data.profile",
    "clean": "openautoglm.data.clean",
    "CleanConfig": "openautoglm.data.clean",
    "find_label_issues": "openautoglm.data.label_issues",
    "out_of_fold_probabilities": "openautoglm.data.label_issues",
    "cma_filter": "openautoglm.data.label_issues",
    "balance": "openautoglm.data.balance",
    "class_weights": "openautoglm.data.balance",
    "active_learning": "openautoglm.data.active",
    "query": "openautoglm.data.active",
    "drift": "openautoglm.data.drift",
    "drift_over_time": "openautoglm.data.drift",
    "agreement": "openautoglm.data.qc",
    "check_guideline": "openautoglm.data.qc",
    "llm_label": "openautoglm.data.llm_label",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from .clean import CleanConfig, clean
    from .pii import PII_TYPES, PIIDetector, PIIMatch
    from .profile import ProfileResult, profile


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
