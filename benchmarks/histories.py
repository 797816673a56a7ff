"""Fingerprints of the histories of a few fixed runs, to check that a refactor changes no number.

    python benchmarks/histories.py > before.json   # on the old tree
    python benchmarks/histories.py > after.json    # on the new tree
    diff before.json after.json                    # empty: bit-identical

Each run is a small MNIST-1D run on the CPU (one thread); its fingerprint is the SHA-256 of every
history column but ``epoch_seconds`` (a wall time), written with full float precision, and of the
final model's parameters. Prints JSON.
"""

from __future__ import annotations

import hashlib
import json
import sys

import torch

from ies import Config, train

RUNS = {
    "baseline": {"threshold": 0.0},
    "ies": {},
    "ies_clean": {"loss_source": "clean"},
    "ies_paper_rule": {"rule": "paper", "patience": 2},
    "loss_rule": {"selector": "loss"},
    "selective_backprop": {"selector": "selective_backprop"},
    "infobatch": {"selector": "infobatch"},
}


def fingerprint(overrides: dict) -> dict:
    cfg = Config(**{"dataset_size": 600, "epochs": 12, "threshold": 0.2, "device": "cpu", "progress": False,
                    "checkpoint_every": 0, **overrides})
    result = train(cfg)
    history = result.history.drop(columns=["epoch_seconds"])
    h = hashlib.sha256(history.to_csv(index=False, float_format="%.17g").encode())
    for p in result.model.state_dict().values():
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return {"sha256": h.hexdigest(), "best_accuracy": float(history["test_accuracy"].max()),
            "backprop_samples": int(history["backprop_samples"].sum())}


if __name__ == "__main__":
    torch.set_num_threads(1)
    names = sys.argv[1:] or list(RUNS)
    json.dump({name: fingerprint(RUNS[name]) for name in names}, sys.stdout, indent=1)
    print()
