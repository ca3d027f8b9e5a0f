"""Optimizers that make pipelines cheaper or better (distillation, prompt search).

Each lives in its own module and is imported on demand, e.g.
``from openautoglm.optimize.distill import distill, Student``.
"""
