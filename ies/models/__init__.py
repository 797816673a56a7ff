"""Models: the ``MODELS`` registry and its networks (:mod:`~ies.models.zoo`), the small transformers
(:mod:`~ies.models.transformer`), a shared fp32 classifier layer (:mod:`~ies.models.layers`), and eval-mode
context managers (:mod:`~ies.models.modes`)."""
