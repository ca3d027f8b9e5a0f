"""The fitted predictor: a weighted blend of members, each a bag of fold models
with their fold's feature preparation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Member:
    family: str
    trial: int
    weight: float
    params: dict[str, Any]
    models: list[Any]  # one per fold


class BaggedEnsemble:
    """``predict_raw(df)``: class probabilities (n, k) or values (n,), averaged over
    each member's fold models and blended with the members' weights."""

    def __init__(self, members: list[Member], preparers: dict[str, list[Any]], flavours: dict[str, str],
                 n_classes: int) -> None:
        self.members = members
        self.preparers = preparers
        self.flavours = flavours
        self.n_classes = n_classes

    def predict_raw(self, df: Any) -> np.ndarray:
        from .families import predict

        features: dict[tuple[str, int], np.ndarray] = {}
        total = None
        for m in self.members:
            flavour = self.flavours[m.family]
            acc = None
            for k, model in enumerate(m.models):
                key = (flavour, k)
                if key not in features:
                    features[key] = np.asarray(self.preparers[flavour][k].transform(df), dtype=np.float64)
                p = predict(model, features[key], self.n_classes)
                acc = p if acc is None else acc + p
            part = m.weight * acc / len(m.models)
            total = part if total is None else total + part
        return total

    def describe(self) -> list[dict[str, Any]]:
        return [{"family": m.family, "trial": m.trial, "weight": round(m.weight, 4), "folds": len(m.models)}
                for m in self.members]
