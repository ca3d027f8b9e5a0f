"""Open-AutoGLM: automate NLP and ML work with large language models."""
__version__ = "0.1.0"
