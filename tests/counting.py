"""A model wrapper that counts what passes through it, for the tests of the compute accounting."""

import torch
from torch import nn


class ForwardCounter(nn.Module):
    """Counts samples forwarded with grad in train mode (``with_grad``, batch sizes in ``grad_batches``) and
    samples forwarded without grad (``without_grad``)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner, self.with_grad, self.without_grad, self.grad_batches = inner, 0, 0, []

    def forward(self, x):
        if self.training and torch.is_grad_enabled():
            self.with_grad += x.shape[0]
            self.grad_batches.append(x.shape[0])
        elif not torch.is_grad_enabled():
            self.without_grad += x.shape[0]
        return self.inner(x)
