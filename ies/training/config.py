"""``Config``: every knob of a training run, frozen, documented field by field, validated on creation.

The choices of ``dataset``, ``model`` and ``selector`` come from their registries (:data:`ies.data.datasets.DATASETS`,
:data:`ies.models.zoo.MODELS`, :data:`ies.selectors.SELECTORS`): a new one is added there, in one place.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, fields

from ..data.datasets import DATASETS
from ..data.streaming import is_folder_path
from ..data.transforms import ATTRIBUTES, NOISE_TYPES
from ..method.criteria import RULES
from ..method.recheck import parse_bins, parse_mode
from ..method.tracker import TRACKER_DTYPES
from ..models.zoo import MODELS
from ..selectors import SELECTORS
from ..selectors.knobs import check_pruning_knobs
from . import faults
from . import fields as fields_

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("exponential", "constant", "cosine")
LOSS_SOURCES = ("training", "clean")
RUN_CONTROL_FIELDS = frozenset({"resume", "progress", "output", "checkpoint_every", "device", "data_dir",
                                "num_workers", "shard_tracker", "overwrite"})
"""Fields that say how a run is executed, not what it computes: a checkpoint resumes across them and
a sweep's cache ignores them (``shard_tracker`` changes no result, but its checkpoint keeps every rank's
tracker share: a resume across it is refused with a one-line error, as one across world sizes)."""


@dataclass(frozen=True)
class Config:
    """One training run, baseline (``threshold=0``) or IES. Build it with keywords, from a dict
    (:meth:`from_dict`, which casts strings as papermill and the CLI give them) or replace fields
    with :meth:`replace`. Every field is checked on creation; a bad value raises ``ValueError``
    naming the field."""

    # ---- data
    dataset: str = "mnist1d"
    """``mnist1d`` (generated offline), ``synthetic`` (tiny Gaussian blobs for tests), ``cifar10``,
    ``cifar100``, a path to an ``.npz`` file with uint8 ``x_train`` (N, H, W, C), ``y_train``,
    ``x_test``, ``y_test``, or a path to an ImageFolder root (``root/train/<class>/<image>`` and
    ``root/val/<class>/<image>``, e.g. ImageNet): streamed from disk by DataLoader workers
    (:mod:`ies.data.streaming`), not held in memory."""
    data_dir: str = ""
    """Dataset cache; empty = ``$IES_DATA_DIR`` or else ``data/`` of the repository."""
    dataset_size: int = 0
    """``mnist1d``/``synthetic``: number of samples generated (train + test, 0 = the default 5000);
    other datasets: keep this many training samples, a fixed random draw (0 = all)."""
    test_size: int = 0
    """``mnist1d`` only: test samples generated with the data set, so that an accuracy is measured on more
    samples than the generator's 20 % (0 = that 20 %); the training split keeps its size, 80 % of
    ``dataset_size`` (one generation of train + test samples: other samples than without it)."""
    augment: bool = True
    """Random crop (pad 4) and horizontal flip on image batches, done on the device; on an ImageFolder,
    ``RandomResizedCrop(image_size)`` and flip in the DataLoader workers (see ``image_size``)."""
    image_size: int = 224
    """ImageFolder datasets: side S of the square inputs: training ``RandomResizedCrop(S)``, evaluation
    resize to ``S * 8/7`` and centre crop S; 0 = the images as they are (all of one size; training
    augmentation a random crop with padding 4 + flip). Not used by in-memory datasets."""
    num_workers: int = 4
    """ImageFolder datasets: DataLoader worker processes that decode the images (0 = in the training
    process). The results do not depend on it. Not used by in-memory datasets."""
    label_noise: float = 0.0
    """Share of the training labels flipped (:mod:`ies.data.transforms`), in [0, 1); the test labels are never
    changed. The flips are drawn with ``seed`` (runs of one seed see the same noisy labels)."""
    noise_type: str = "symmetric"
    """``symmetric``: exactly ``round(label_noise * N)`` labels replaced by a uniformly drawn other class;
    ``asymmetric``: ``round(label_noise * n_c)`` samples of each source class flipped to its partner
    (CIFAR-10: truck->automobile, bird->airplane, deer->horse, cat<->dog; MNIST-1D: 2->7, 3->8, 5<->6, 7->1)."""
    imbalance: float = 1.0
    """Long-tailed training set: class ``c`` keeps ``floor(n_max * imbalance ** (-c / (C - 1)))`` samples
    (``n_max`` = the smallest class); >= 1, 1 = unchanged. The test set stays balanced."""
    subgroup_share: float = 0.0
    """A minority subgroup: this share (in (0, 0.5]; 0 = none) of each class of ``subgroup_classes``
    gets the visible ``subgroup_attribute``, in the training and the test split, with its group label
    kept for the per-group accounting (``groups.csv``)."""
    subgroup_classes: str = ""
    """Comma-separated classes that have the subgroup (``"0,3"``); empty = every class."""
    subgroup_attribute: str = "invert"
    """``invert`` (images ``255 - x``, signals ``-x``) or ``noise`` (added Gaussian noise, std 1 in the
    units of a standardised signal, 255 for images)."""

    # ---- model and optimisation
    model: str = "auto"
    """``mlp``, ``cnn1d`` (MNIST-1D), ``small_cnn``, ``resnet18``, ``resnet34`` (32x32 images),
    ``transformer`` (a 1-D patch transformer for signals, a tiny ViT for images: :mod:`ies.models.transformer`),
    ``imagenet_resnet18/34/50/101``, ``imagenet_densenet121`` (torchvision's ImageNet networks, 224x224,
    no pretrained weights); ``auto`` picks ``cnn1d`` for 1-D data and ``resnet18`` for images."""
    epochs: int = 60
    """Number of training epochs."""
    batch_size: int = 64
    """Mini-batch size of the training pass (the authors use 64)."""
    min_last_batch: int = 0
    """Training pass: a last (remainder) batch with fewer samples than this is merged into the batch before
    it (0 = never, as the authors). IES trains a varying number of samples, so its last batch can hold one
    sample, whose train-mode batch statistics spike the gradient (``benchmarks/RECIPE_NOTES.md``)."""
    eval_batch_size: int = 0
    """Batch size of the no-grad passes (tracking of mastered samples, clean losses, test); 0 = 1024 on
    a GPU, 128 on a CPU (where a forward at batch 1024 costs about twice as much per sample)."""
    optimizer: str = "sgd"
    """``sgd`` (momentum, as the authors) or ``adam``."""
    lr: float = 0.1
    """Initial learning rate (the authors: 0.1 with SGD)."""
    momentum: float = 0.9
    """SGD momentum."""
    weight_decay: float = 5e-4
    """L2 weight decay."""
    schedule: str = "exponential"
    """Learning-rate schedule stepped once per epoch: ``exponential`` (x ``gamma``), ``constant``,
    ``cosine`` (to 0 over ``epochs``)."""
    gamma: float = 0.96
    """Decay factor of the ``exponential`` schedule (the authors: 0.96)."""

    # ---- instance-dependent early stopping
    threshold: float = 1e-3
    """delta: mastery threshold; 0 = baseline (nothing is ever excluded). The authors use 1e-3 on
    CIFAR-10 and double it on CIFAR-100."""
    order: int = 2
    """Order N of the backward difference of the loss, 0..3."""
    rule: str = "official"
    """``official`` (moving average of |D| over ``window``, summed over ``patience``) or ``paper``
    (|D| < delta for ``patience`` consecutive epochs)."""
    window: int = 3
    """Moving-average window of the ``official`` rule."""
    patience: int = 1
    """``paper``: consecutive epochs below delta; ``official``: moving averages summed (the authors' k)."""
    selector: str = "ies"
    """Who trains each epoch (:data:`ies.selectors.SELECTORS`): ``ies`` (the rule above); ``random``: each
    epoch exclude a uniformly random set of the size given by ``random_budget`` (the matched-budget
    control); ``loss``: IES with the N = 0 rule, excluded while the raw loss stays below ``threshold``
    for ``patience`` epochs (``order`` and ``rule`` are then not used)."""
    random_budget: str = ""
    """For ``selector=random``: a reference run's ``history.csv`` whose ``forward_only_samples``
    column gives the number of samples to exclude in each epoch."""
    loss_source: str = "training"
    """``training``: active samples' losses from their training
    pass (free), excluded samples' from a no-grad eval-mode pass with the training augmentation (the
    authors' way). Extra cost: one forward of the excluded samples; with a share ``s`` excluded, an epoch
    costs about ``1 - 2s/3`` of the baseline's (a forward is ~1/3 of a training step), at best
    ``1 / (1 - 2s/3)`` times faster. ``clean``: every sample's loss from one eval-mode pass without
    augmentation at the end of the epoch. Extra cost: one forward of the whole training set every epoch
    (the baseline runs it too): an epoch costs about ``4/3 - s`` of a plain training epoch, so it beats
    plain training only once ``s > 1/3``."""
    anneal_fraction: float = 0.0
    """Train on every sample in this last fraction of the epochs (the paper uses 0.1 on ImageNet)."""
    recheck: str = "every"
    """When the excluded (mastered) samples of ``ies``/``loss`` are forwarded to re-check their loss
    (:mod:`ies.method.recheck`): ``every`` epoch (the paper's IES), every ``M`` epochs (a whole number, e.g.
    ``5``; also given as an int), or ``lr``: a period growing as the learning rate decays (1 at
    lr >= 0.05, then 2, 3, 4 and 5 below 0.001 with the default ``recheck_bins``). In an epoch without a
    re-check they are neither forwarded nor recorded and stay excluded; at a re-check their difference
    is taken over their last recorded losses. With ``loss_source=clean`` the clean pass of an epoch
    without a re-check forwards the trained samples only."""
    recheck_bins: str = "0.05,0.01,0.005,0.001"
    """``recheck=lr``: the learning-rate edges, comma-separated, strictly decreasing; the period is 1 +
    the number of edges above the epoch's learning rate."""
    tracker_dtype: str = "float32"
    """Storage dtype of the tracker's loss history (:class:`ies.MasteryTracker`; differences are taken in
    float64 either way): ``float32``, or ``float16`` / ``bfloat16`` (half the history's memory, decisions
    those of the rounded losses; their agreement with float32 is measured in ``benchmarks/tracker_dtype.py``)."""

    # ---- the peers: selectors beside IES (notebook 07)
    prune_ratio: float = 0.5
    """``infobatch`` / ``small_loss_rescale``: share of the below-mean-loss samples left out of each epoch,
    in [0, 1); the kept ones get loss weight 1 / (1 - prune_ratio) (InfoBatch's default 0.5)."""
    infobatch_anneal: float = 0.125
    """``infobatch``: train on all data, unweighted, in this last fraction of the epochs (InfoBatch's
    default 0.125; ``round(fraction x epochs)`` epochs, halves to even). ``small_loss_rescale`` ignores it."""
    sb_beta: float = 1.0
    """``selective_backprop``: keep probability = (percentile of the loss among the recent losses) ** sb_beta,
    > 0; the expected kept share is about 1 / (1 + sb_beta). Our default."""
    sb_history: int = 1024
    """``selective_backprop``: number of recent per-sample losses the percentile is taken over. Our default."""
    es_patience: int = 5
    """``early_stop``: stop once the validation accuracy has not improved for this many epochs. Our default."""
    es_min_delta: float = 0.0
    """``early_stop``: an improvement must beat the best validation accuracy by more than this."""
    val_fraction: float = 0.1
    """``early_stop``: share of the training set held out for validation (stratified by class, drawn from
    ``seed``, never trained), in (0, 1)."""
    seta_prune_ratio: float = 0.1
    """``seta``: share left out by the random draw, in [0, 0.9] (kept share >= 0.1, as the authors); their 0.1."""
    seta_groups: int = 5
    """``seta``: k-means groups of the losses, >= 1 (the authors' 5)."""
    seta_window: float = 0.9
    """``seta``: window = round(seta_groups x seta_window) groups, in (0, 1], >= 1 group (the authors' 0.9)."""
    seta_anneal: float = 0.125
    """``seta``: this last share of the epochs trains the random draw alone, in [0, 1] (the authors' 1 - 0.875)."""
    orderdp_pool: float = 0.8
    """``orderdp``: share of the samples in the random pool, in (0, 1] (the authors' README: 0.8)."""
    orderdp_top_q: float = 0.375
    """``orderdp``: share of the pool with the largest stale losses that trains, in (0, 1] (README: 0.375)."""
    pfb_prune_ratio: float = 0.4
    """``pfb``: share of every batch blocked after the first stage, in [0, 1) (the paper's ImageNet 40 %)."""
    pfb_centres: int = 100
    """``pfb``: running centres of the shallow-feature density estimate, >= 1. Our default."""
    class_cap: float = 1.0
    """Class-balanced removal (``ies`` and ``loss`` selectors): after each decision, at most
    ``floor(class_cap * n_g)`` samples of each group ``g`` stay excluded, those with the lowest last loss
    (:func:`ies.method.cap.cap_mastered`); the others train again. In (0, 1]; 1 = no cap."""
    cap_by: str = "class"
    """Groups of ``class_cap``: ``class`` (the training labels as given, noisy ones included: what a
    method can see) or ``subgroup`` (the minority-subgroup label of ``subgroup_share``)."""

    # ---- run
    seed: int = 0
    """Seed of every random number generator (python, numpy, torch, the loader)."""
    device: str = "auto"
    """``auto`` (CUDA if available, else CPU), ``cpu``, ``cuda``, ``cuda:1``, ``mps``."""
    amp: bool = True
    """bf16 autocast on CUDA (classifier and loss stay in fp32); ignored elsewhere."""
    channels_last: bool = True
    """channels_last memory format for image batches (on every device: faster on CPUs too) and, on
    CUDA, for the model."""
    compile: bool = False
    """``torch.compile`` the model (batch shapes are kept fixed for it)."""
    track_grad_norm: bool = True
    """Record the mini-batch gradient norm of every step (per-epoch mean and max in the history)."""
    keep_loss_matrix: bool = False
    """Keep every sample's loss of every epoch, ``(N, epochs)``, in the result (for analysis)."""
    output: str = ""
    """Folder for ``history.csv``, ``metrics.json`` and checkpoints; empty = write nothing."""
    checkpoint_every: int = 1
    """Save a checkpoint every this many epochs when ``output`` is set; 0 = never."""
    resume: bool = False
    """Continue from the checkpoint in ``output`` (an error if there is none)."""
    overwrite: bool = False
    """Replace the run that ``output`` holds (otherwise a new run there is refused: :mod:`ies.training.rundir`);
    its files stay until this run has finished its first epoch."""
    shard_tracker: bool = False
    """On several processes (``torchrun``, :mod:`ies.training.ddp`): each rank keeps the loss history of its own
    share of the samples only (:class:`ies.method.sharded.ShardedTracker`, ``i % R == rank``); the ranks send each
    loss to its owner and gather the decisions as bits, instead of all-reducing all N losses. The same
    decisions and history (floats to rounding); not with ``keep_loss_matrix`` or ``class_cap < 1``; a
    resume needs it as the checkpoint had it. In one process it changes nothing (the whole tracker)."""
    allow_nonfinite: bool = False
    """Continue when the mean training loss of an epoch is not finite (otherwise stop with an error)."""
    progress: bool = True
    """Show a tqdm progress bar over epochs."""

    def __post_init__(self) -> None:
        if isinstance(self.recheck, int) and not isinstance(self.recheck, bool):  # Config(recheck=5)
            object.__setattr__(self, "recheck", str(self.recheck))
        for f in fields(self):
            _check_type(f, getattr(self, f.name))
        choices = {
            "model": tuple(MODELS),
            "optimizer": OPTIMIZERS,
            "schedule": SCHEDULES,
            "rule": RULES,
            "selector": tuple(SELECTORS),
            "loss_source": LOSS_SOURCES,
        }
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}{_suggest(value, allowed)}")
        if self.dataset not in DATASETS and not self.dataset.endswith(".npz") and not is_folder_path(self.dataset):
            raise ValueError(
                f"dataset must be one of {tuple(DATASETS)}, a path to an .npz file or an ImageFolder root "
                f"directory, got {self.dataset!r}"
                f"{_suggest(self.dataset, DATASETS)}"
            )
        _at_least(self, dataset_size=0, test_size=0, epochs=1, batch_size=1, eval_batch_size=0, min_last_batch=0,
                  window=1, patience=1)
        _at_least(self, checkpoint_every=0, seed=0, image_size=0, num_workers=0)
        faults.check_int_limits(vars(self))
        _check_transforms(self)
        for name in ("lr", "momentum", "weight_decay", "gamma", "threshold", "anneal_fraction"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if self.test_size and self.dataset != "mnist1d":
            raise ValueError(f"test_size applies to the generated mnist1d only, got {self.test_size} for "
                             f"dataset {self.dataset!r}")
        if self.lr == 0:
            raise ValueError("lr must be > 0, got 0")
        if not 0 <= self.order <= 3:
            raise ValueError(f"order must be in 0..3, got {self.order}")
        if self.momentum >= 1:
            raise ValueError(f"momentum must be < 1, got {self.momentum}")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma}")
        if self.anneal_fraction > 1:
            raise ValueError(f"anneal_fraction must be in [0, 1], got {self.anneal_fraction}")
        _check_peers(self)
        if self.selector == "random" and not self.random_budget:
            raise ValueError("random_budget must name a reference history.csv when selector='random'")
        object.__setattr__(self, "recheck", str(parse_mode(self.recheck)))  # "1" -> "every", " 5" -> "5"
        parse_bins(self.recheck_bins)
        if self.tracker_dtype not in TRACKER_DTYPES:
            raise ValueError(f"tracker_dtype must be one of {tuple(TRACKER_DTYPES)}, got {self.tracker_dtype!r}")
        if self.resume and not self.output:
            raise ValueError("resume needs output: the folder holding the checkpoint")
        if self.resume and self.overwrite:
            raise ValueError("resume and overwrite exclude each other: continue the run, or replace it")
        dev = self.device
        if not (dev in ("auto", "cpu", "cuda", "mps") or (dev.startswith("cuda:") and dev[5:].isdigit())):
            raise ValueError(f"device must be auto, cpu, cuda, cuda:N or mps, got {dev!r}")

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_dict(cls, values: dict[str, typing.Any]) -> Config:
        """Build from a dict whose values may be strings (``"1e-3"``, ``"true"``, ``"60"``).
        Unknown keys are rejected with the closest valid name suggested."""
        names = {f.name: f for f in fields(cls)}
        kwargs = {}
        for key, value in values.items():
            if key not in names:
                raise ValueError(f"unknown config field {key!r}{_suggest(key, names)}")
            kwargs[key] = cast(names[key], value)
        return cls(**kwargs)

    def replace(self, **changes: typing.Any) -> Config:
        """A copy with some fields changed (strings cast as in :meth:`from_dict`)."""
        merged = {**dataclasses.asdict(self), **changes}
        return Config.from_dict(merged)

    def to_dict(self) -> dict[str, typing.Any]:
        return dataclasses.asdict(self)

    @property
    def is_baseline(self) -> bool:
        """True when nothing is ever excluded (threshold 0 with the ``ies`` or ``loss`` selector)."""
        return self.selector in ("ies", "loss") and self.threshold == 0


def field_docs() -> dict[str, str]:
    """The docstring of every field (the string under it), read once from this module's source; used
    by the CLI's ``--help``."""
    return fields_.attribute_docs(Config)


def cast(f: dataclasses.Field, value: typing.Any) -> typing.Any:
    """Cast ``value`` (possibly a string) to the type of field ``f``; ValueError naming it if impossible."""
    return fields_.cast(f.name, fields_.base_types(Config)[f.name], value)


def _check_type(f: dataclasses.Field, value: typing.Any) -> None:
    fields_.check_type(f.name, fields_.base_types(Config)[f.name], value)


def _check_peers(cfg: Config) -> None:
    """The peer selectors' knobs (checked whatever the selector, so a sweep fails before training)."""
    _at_least(cfg, sb_history=1, es_patience=1)
    ranges = {"prune_ratio": (0, 1, "[0, 1)"), "infobatch_anneal": (0, 1, "[0, 1]"),
              "val_fraction": (0, 1, "(0, 1)"), "es_min_delta": (0, math.inf, "[0, inf)")}
    for name, (low, high, text) in ranges.items():
        value = getattr(cfg, name)
        ok = math.isfinite(value) and low <= value <= high
        ok = ok and not (text.endswith(")") and value == high) and not (text.startswith("(") and value == low)
        if not ok:
            raise ValueError(f"{name} must be in {text}, got {value}")
    if not (math.isfinite(cfg.sb_beta) and cfg.sb_beta > 0):
        raise ValueError(f"sb_beta must be a finite number > 0, got {cfg.sb_beta}")
    check_pruning_knobs(cfg)
def _check_transforms(cfg: Config) -> None:
    """The data-transform and cap fields (:mod:`ies.data.transforms`, :func:`ies.method.cap.cap_mastered`)."""
    if not (math.isfinite(cfg.label_noise) and 0 <= cfg.label_noise < 1):
        raise ValueError(f"label_noise must be in [0, 1), got {cfg.label_noise}")
    if cfg.noise_type not in NOISE_TYPES:
        raise ValueError(f"noise_type must be one of {NOISE_TYPES}, got {cfg.noise_type!r}")
    if not (math.isfinite(cfg.imbalance) and cfg.imbalance >= 1):
        raise ValueError(f"imbalance must be a finite number >= 1, got {cfg.imbalance}")
    if not (math.isfinite(cfg.subgroup_share) and 0 <= cfg.subgroup_share <= 0.5):
        raise ValueError(f"subgroup_share must be in [0, 0.5] (0 = no subgroup), got {cfg.subgroup_share}")
    if cfg.subgroup_attribute not in ATTRIBUTES:
        raise ValueError(f"subgroup_attribute must be one of {ATTRIBUTES}, got {cfg.subgroup_attribute!r}")
    subgroup_classes(cfg)
    if not (math.isfinite(cfg.class_cap) and 0 < cfg.class_cap <= 1):
        raise ValueError(f"class_cap must be in (0, 1], got {cfg.class_cap}")
    if cfg.cap_by not in ("class", "subgroup"):
        raise ValueError(f"cap_by must be 'class' or 'subgroup', got {cfg.cap_by!r}")
    if cfg.class_cap < 1 and cfg.selector not in ("ies", "loss"):
        raise ValueError(f"class_cap applies to the ies and loss selectors, not {cfg.selector!r}")
    if cfg.class_cap < 1 and cfg.cap_by == "subgroup" and not cfg.subgroup_share:
        raise ValueError("cap_by='subgroup' needs a subgroup: set subgroup_share > 0")


def subgroup_classes(cfg: Config) -> tuple[int, ...]:
    """``cfg.subgroup_classes`` as a tuple of ints (empty = every class); ValueError naming the field."""
    text = cfg.subgroup_classes.strip()
    if not text:
        return ()
    try:
        classes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"subgroup_classes must be comma-separated class numbers, got {text!r}") from None
    if any(c < 0 for c in classes):
        raise ValueError(f"subgroup_classes must be class numbers >= 0, got {text!r}")
    return classes


def _at_least(cfg: Config, **lows: int) -> None:
    for name, low in lows.items():
        if getattr(cfg, name) < low:
            raise ValueError(f"{name} must be >= {low}, got {getattr(cfg, name)}")


_suggest = fields_.suggest
