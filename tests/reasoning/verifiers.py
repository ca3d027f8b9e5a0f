"""Verifiers importable by path from YAML in the tests."""


def reject_positive(output, record):
    return "the text is sarcastic" if output.get("label") == "positive" else True


def broken(output, record):
    raise RuntimeError("secret-internal-detail at /srv/app.py line 12")
