"""Data: datasets as tensors on the device (:mod:`~ies.data.datasets`, the ``DATASETS`` registry), batch
augmentation (:mod:`~ies.data.augment`), data sets streamed from disk (:mod:`~ies.data.streaming`), and the
label-noise / long-tail / subgroup transforms (:mod:`~ies.data.transforms`)."""
