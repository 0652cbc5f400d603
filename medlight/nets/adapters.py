"""Hierarchical feature adapters (HierAdaptMR, Xu & Oksuz 2025): protocol, center and universal levels.

An adapter is a small residual bottleneck (1x1 down, depthwise 3x3, LeakyReLU, 1x1 up) whose last layer
starts at zero, so a new adapter is the identity and cannot disturb a trained backbone. At one place in a
network a :class:`HierarchicalAdapter` applies, per sample, the adapter of the sample's protocol (sequence
differences) and then the adapter of its center (scanner differences). The universal adapter stands in for
the center adapter for centers without one; during training it replaces the center adapter of a random
share of the samples (stochastic replacement), so it learns what centers have in common.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)
UNIVERSAL = "universal"
Route = tuple[str | None, str]  # (protocol adapter or None, center adapter or UNIVERSAL)


class BottleneckAdapter(nn.Module):
    """``x + up(act(depthwise(down(x))))`` with ``up`` initialised to zero (an identity at the start)."""

    def __init__(self, channels: int, reduction: int = 4, spatial_dims: int = 2) -> None:
        super().__init__()
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        hidden = max(1, channels // reduction)
        self.down = conv(channels, hidden, kernel_size=1)
        self.spatial = conv(hidden, hidden, kernel_size=3, padding=1, groups=hidden)
        self.act = nn.LeakyReLU(0.1)
        self.up = conv(hidden, channels, kernel_size=1)
        nn.init.zeros_(self.up.weight)
        if self.up.bias is not None:
            nn.init.zeros_(self.up.bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.up(self.act(self.spatial(self.down(x))))


class HierarchicalAdapter(nn.Module):
    """Protocol, center and universal adapters at one position; ``route`` says which each sample uses.

    Args:
        channels: feature channels at this position.
        protocols: protocol ids with their own adapter.
        centers: center ids with their own adapter.
        reduction: bottleneck reduction factor.
        spatial_dims: 2 or 3.
    """

    def __init__(
        self, channels: int, protocols: Sequence[str], centers: Sequence[str], reduction: int = 4, spatial_dims: int = 2
    ) -> None:
        super().__init__()
        make = lambda: BottleneckAdapter(channels, reduction, spatial_dims)  # noqa: E731
        self.protocol = nn.ModuleDict({p: make() for p in protocols})
        self.center = nn.ModuleDict({c: make() for c in centers})
        self.universal = make()
        self.route: list[Route] | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.route is None:  # no identifiers given: the network runs as a plain backbone
            return x
        if len(self.route) != x.shape[0]:
            raise ValueError(f"adapter route has {len(self.route)} entries for a batch of {x.shape[0]}")
        x = _per_sample(x, [p for p, _ in self.route], self.protocol)
        return _per_sample(x, [c for _, c in self.route], {**self.center, UNIVERSAL: self.universal})


def _per_sample(x: Tensor, keys: list[str | None], modules: dict | nn.ModuleDict) -> Tensor:
    """Apply ``modules[key]`` to the samples routed to ``key`` (``None``: unchanged)."""
    for key in dict.fromkeys(k for k in keys if k is not None):
        index = torch.tensor([i for i, k in enumerate(keys) if k == key], device=x.device)
        x = x.index_copy(0, index, modules[key](x.index_select(0, index)))
    return x


class AdapterRouter:
    """Chooses each sample's adapters from its identifiers; unknown ids fall back to the universal adapter.

    Args:
        protocols: protocol ids that have adapters.
        centers: center ids that have adapters.
        universal_prob: during training, the probability that a sample's center adapter is replaced by the
            universal adapter.
    """

    def __init__(self, protocols: Sequence[str], centers: Sequence[str], universal_prob: float = 0.3) -> None:
        self.protocols, self.centers, self.universal_prob = set(protocols), set(centers), universal_prob
        self._reported: set[tuple[str, str]] = set()

    def __call__(self, protocols: Sequence[str], centers: Sequence[str], training: bool) -> list[Route]:
        routes: list[Route] = []
        for protocol, center in zip(protocols, centers):
            known_protocol = protocol in self.protocols
            if not known_protocol:
                self._report("protocol", protocol)
            if center not in self.centers:
                self._report("center", center)
            if not known_protocol or center not in self.centers:
                routes.append((protocol if known_protocol else None, UNIVERSAL))
            elif training and float(torch.rand(())) < self.universal_prob:
                routes.append((protocol, UNIVERSAL))
            else:
                routes.append((protocol, center))
        return routes

    def _report(self, level: str, name: str) -> None:
        if (level, name) not in self._reported:  # once per id, not once per batch
            self._reported.add((level, name))
            log.warning("adapters: %s %r has no adapter; using the universal adapter", level, name)
