"""SeTa and OrderDP: the authors' selection code next to ours on the same per-sample losses; prints JSON.

The authors' files are read from their repositories at run time, never copied into this project:

    # once: fetch github:mrazhou/SeTa and github:shengze-xu/OrderDP (git directories, no work tree needed)
    python benchmarks/peers_official.py --seta-git /path/to/mrazhou+SeTa/repo \\
        --orderdp-git /path/to/shengze-xu+OrderDP/repo [--sklearn-path DIR]

(or the environment variables ``IES_SETA_GIT`` / ``IES_ORDERDP_GIT``). The script materialises
``seta.py`` and ``cifar/orderDP/orderDP.py`` with ``git --git-dir=... show HEAD:<path>`` into a temporary
folder and imports them from there. SeTa's code needs scikit-learn's ``KMeans``: ``--sklearn-path`` (or
``IES_SKLEARN_PATH``) is appended to ``sys.path`` for it (e.g. ``pip install --target DIR scikit-learn``);
without scikit-learn the authors' k-means is replaced by a stub that calls ours, and the JSON says so.

The losses: a synthetic table ``L[t, i]`` (``--n`` samples, ``--epochs`` epochs) of decaying per-sample
curves with noise; a method that trains sample ``i`` in epoch ``t`` records ``L[t, i]`` as its score,
as the loop's training pass does. Two comparisons per method:

- ``coupled``: every epoch both rules see the same scores (the authors' state) and the same random draw
  (SeTa's ``torch.randperm`` from a seeded global generator, OrderDP's numpy pool from its sampler's
  seed), so the chosen sets should agree exactly: ``jaccard`` per epoch (1 = identical);
- ``independent``: each runs its own trajectory with its own randomness; the kept share per epoch,
  and the overlap (Jaccard) of the chosen sets official vs ours next to ours (seed a) vs ours (seed b):
  equal overlaps mean the two choose alike in distribution.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ies import Config  # noqa: E402
from ies.selectors import SELECTORS  # noqa: E402
from ies.selectors.rules_pruning import kmeans_1d, orderdp_choose, seta_choose, seta_keep_count  # noqa: E402


def losses(n: int, epochs: int, seed: int) -> torch.Tensor:
    """``(epochs, n)`` float32: ``a_i exp(-r_i t) + b_i`` plus noise, clamped at 0 (losses that fall at
    sample-dependent rates from about 2.3, a few staying high)."""
    g = torch.Generator().manual_seed(seed)
    a = 1.5 + torch.rand(n, generator=g)
    r = 0.05 + 0.5 * torch.rand(n, generator=g) ** 2
    b = 0.8 * (torch.rand(n, generator=g) < 0.1) + 0.02 * torch.rand(n, generator=g)
    t = torch.arange(epochs).unsqueeze(1)
    noise = 0.05 * torch.randn(epochs, n, generator=g)
    return (a * torch.exp(-r * t) + b + noise).clamp(min=0)


def materialise(git_dir: str, path: str, folder: Path, name: str) -> types.ModuleType:
    """Write ``HEAD:path`` of the git directory into ``folder`` and import it as module ``name``."""
    text = subprocess.run(["git", f"--git-dir={git_dir}", "show", f"HEAD:{path}"], check=True,
                          capture_output=True, text=True).stdout
    target = folder / f"{name}.py"
    target.write_text(text)
    spec = importlib.util.spec_from_file_location(name, target)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sklearn_or_stub(path: str | None) -> str:
    """Make ``sklearn.cluster.KMeans`` importable: the real one (``path`` appended to ``sys.path``) or a
    stub whose ``fit`` labels with our :func:`kmeans_1d` (said in the output)."""
    if path:
        sys.path.append(path)
    try:
        import sklearn.cluster  # noqa: F401

        return "scikit-learn " + __import__("sklearn").__version__
    except ImportError:
        class KMeans:  # the stub: only what seta.py calls
            def __init__(self, n_clusters, random_state=0):
                self.k = n_clusters

            def fit(self, x):
                self.labels_ = kmeans_1d(torch.as_tensor(x).flatten(), self.k).numpy()
                return self

        sys.modules["sklearn"] = types.ModuleType("sklearn")
        sys.modules["sklearn.cluster"] = types.SimpleNamespace(KMeans=KMeans)
        return "stub: our kmeans_1d (scikit-learn not found)"


def sse(values: torch.Tensor, labels: torch.Tensor) -> float:
    """Within-group sum of squares of a 1-D grouping (k-means' objective)."""
    v = values.double()
    k = int(labels.max()) + 1
    counts = torch.bincount(labels, minlength=k).double().clamp(min=1)
    means = torch.zeros(k, dtype=torch.float64).index_add_(0, labels, v) / counts
    return float(((v - means[labels]) ** 2).sum())


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def ours(selector: str, cfg: Config, table: torch.Tensor, seed: int) -> list[set]:
    """Our selector's chosen set per epoch, training on ``table`` (its own generator, ``seed``)."""
    epochs, n = table.shape
    sel = SELECTORS[selector](cfg, n, torch.device("cpu"), torch.Generator().manual_seed(seed))
    chosen = []
    for t in range(epochs):
        idx = sel.plan(t, 0.1).train
        chosen.append(set(idx.tolist()))
        sel.observe(idx, table[t, idx])
        sel.end_epoch(t)
    return chosen


def official_epoch(ds, sampler, table, t):
    """Run the authors' sampler for epoch ``t`` (its prints silenced), train its samples on ``table``."""
    with contextlib.redirect_stdout(io.StringIO()):
        iter(sampler)  # one reset, as a DataLoader's one ``iter`` per epoch (a for loop would reset twice)
    idx = [int(i) for i in sampler.sample_indices]
    ds.set_active_indices(torch.tensor(idx))
    ds.update(table[t, idx].clone())
    return set(idx)


def seta_bench(mod, table, args) -> dict:
    epochs, n = table.shape
    cfg = Config(epochs=epochs, selector="seta", seta_prune_ratio=args.seta_prune_ratio, seta_groups=args.groups,
                 seta_window=args.window)
    delta = 1 - cfg.seta_anneal
    # coupled: the same scores and the same draw every epoch
    ds = mod.SeTa(list(range(n)), epochs, cfg.seta_prune_ratio, cfg.seta_groups, cfg.seta_window, delta)
    sampler = mod.IBSampler(ds)
    coupled, agreement, inertia = [], [], []
    m = seta_keep_count(n, cfg.seta_prune_ratio)
    for t in range(epochs):
        before, iteration, pruning = ds.scores.clone(), ds.iterations, sampler.iterations <= sampler.stop_prune
        draw = torch.randperm(n, generator=torch.Generator().manual_seed(args.seed + t))[:m]
        torch.manual_seed(args.seed + t)  # the authors draw with torch's global generator
        theirs = official_epoch(ds, sampler, table, t)
        if pruning:
            mine = seta_choose(before, draw, iteration, cfg.seta_groups, cfg.seta_window)
            coupled.append(jaccard(theirs, set(torch.nonzero(mine).flatten().tolist())))
            s = before[draw]
            if s.max() > s.min():
                _, groups = mod.kmeans_group(s, draw, cfg.seta_groups)
                label = torch.empty(m, dtype=torch.long)
                for g, members in enumerate(groups):
                    pos = {int(i): p for p, i in enumerate(draw.tolist())}
                    label[[pos[int(i)] for i in members]] = g
                mine_label = kmeans_1d(s, cfg.seta_groups)
                agreement.append(float((label == mine_label).double().mean()))
                inertia.append(sse(s, mine_label) / sse(s, label))
    # independent trajectories: the authors' draws from torch's global generator, seeded apart from ours
    torch.manual_seed(args.seed + 2)
    ds = mod.SeTa(list(range(n)), epochs, cfg.seta_prune_ratio, cfg.seta_groups, cfg.seta_window, delta)
    sampler = mod.IBSampler(ds)
    off = [official_epoch(ds, sampler, table, t) for t in range(epochs)]
    return {"settings": {"prune_ratio": cfg.seta_prune_ratio, "groups": cfg.seta_groups, "window": cfg.seta_window,
                         "delta": delta},
            "coupled_jaccard": coupled, "kmeans_label_agreement_with_sklearn": agreement,
            "kmeans_inertia_ours_over_sklearn": inertia,
            **independent(off, ours("seta", cfg, table, args.seed), ours("seta", cfg, table, args.seed + 1), n)}


def orderdp_bench(mod, table, args) -> dict:
    epochs, n = table.shape
    cfg = Config(epochs=epochs, selector="orderdp", orderdp_pool=args.pool, orderdp_top_q=args.top_q)
    ds = mod.OrderDP(list(range(n)), epochs, cfg.orderdp_pool, cfg.orderdp_top_q)
    with contextlib.redirect_stdout(io.StringIO()):
        sampler = mod.IBSampler(ds)  # its constructor draws once (iterations 0)
    coupled = []
    for t in range(epochs):
        before = ds.scores.clone()
        np.random.seed(sampler.iterations)  # the seed the authors' sampler sets before its pool
        pool = torch.from_numpy(np.random.choice(n, ds.random_len, replace=False))
        theirs = official_epoch(ds, sampler, table, t)
        mine = orderdp_choose(before, pool, ds.top_q)
        coupled.append(jaccard(theirs, set(torch.nonzero(mine).flatten().tolist())))
    ds = mod.OrderDP(list(range(n)), epochs, cfg.orderdp_pool, cfg.orderdp_top_q)
    with contextlib.redirect_stdout(io.StringIO()):
        sampler = mod.IBSampler(ds)
    off = [official_epoch(ds, sampler, table, t) for t in range(epochs)]
    return {"settings": {"pool": cfg.orderdp_pool, "top_q": cfg.orderdp_top_q},
            "coupled_jaccard": coupled,
            **independent(off, ours("orderdp", cfg, table, args.seed), ours("orderdp", cfg, table, args.seed + 1), n)}


def independent(off: list[set], a: list[set], b: list[set], n: int) -> dict:
    r = lambda xs: [round(x, 4) for x in xs]  # noqa: E731
    return {"kept_share_official": r([len(s) / n for s in off]), "kept_share_ours": r([len(s) / n for s in a]),
            "jaccard_official_vs_ours": r([jaccard(x, y) for x, y in zip(off, a, strict=True)]),
            "jaccard_ours_vs_ours": r([jaccard(x, y) for x, y in zip(a, b, strict=True)])}


def summary(result: dict) -> dict:
    mean = lambda xs: round(sum(xs) / len(xs), 4) if xs else None  # noqa: E731
    return {k: mean(v) for k, v in result.items() if isinstance(v, list)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seta-git", default=os.environ.get("IES_SETA_GIT"))
    p.add_argument("--orderdp-git", default=os.environ.get("IES_ORDERDP_GIT"))
    p.add_argument("--sklearn-path", default=os.environ.get("IES_SKLEARN_PATH"))
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seta-prune-ratio", type=float, default=0.1)
    p.add_argument("--groups", type=int, default=5)
    p.add_argument("--window", type=float, default=0.9)
    p.add_argument("--pool", type=float, default=0.8)
    p.add_argument("--top-q", type=float, default=0.375)
    args = p.parse_args(argv)
    if not (args.seta_git and args.orderdp_git):
        p.error("give --seta-git and --orderdp-git (or IES_SETA_GIT / IES_ORDERDP_GIT): the fetched git dirs")
    torch.set_num_threads(1)
    table = losses(args.n, args.epochs, args.seed)
    out = {"n": args.n, "epochs": args.epochs, "kmeans": sklearn_or_stub(args.sklearn_path)}
    with tempfile.TemporaryDirectory() as tmp:
        seta_mod = materialise(args.seta_git, "seta.py", Path(tmp), "official_seta")
        dp_mod = materialise(args.orderdp_git, "cifar/orderDP/orderDP.py", Path(tmp), "official_orderdp")
        out["seta"] = seta_bench(seta_mod, table, args)
        out["orderdp"] = orderdp_bench(dp_mod, table, args)
    out["summary"] = {k: summary(out[k]) for k in ("seta", "orderdp")}
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
