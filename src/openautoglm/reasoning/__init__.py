"""Reasoning strategies, one file each: how a task gets from a record to an answer.

* ``direct`` (in :mod:`openautoglm.core.strategy`) – one prompt, the answer under the
  output kind;
* ``chain_of_thought`` – free-text reasoning first, then the constrained answer;
* ``self_consistency`` – n sampled reasonings, majority vote, confidence = vote share;
* ``verify_revise`` – answer, check with a verifier, retry with its feedback (and,
  for labels, without the rejected answers) up to a limit.

Selected per task: ``Task(..., strategy="chain_of_thought")`` or ``strategy:`` in YAML.
Each registers itself in :data:`openautoglm.core.strategy.STRATEGIES` and is declared
in the entry-point group ``openautoglm.strategies``, so core finds it by name without
importing this package (docs/strategies.md shows how to add one).
"""
