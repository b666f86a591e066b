"""Run under torchrun by tests/test_distributed.py: two epochs of a tiny BatchNorm-free model on a
long-tailed toy set, in one process or as one rank of a DDP job; rank 0 saves the parameters.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_worker.py OUT_DIR STEP:PERTURBATION[:compile] ...

With ``:compile`` the model is compiled as a run compiles it (``wrap_model(..., compile=True)``; the backend is
``LTLIB_COMPILE_BACKEND``).
"""
from __future__ import annotations

import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

from ltlib.data.loader import DeviceLoader
from ltlib.data.sources import ImageSet
from ltlib.runs.distributed import DistInfo, ShardedLoader, init_from_env, wrap_model
from ltlib.methods.ccsam import CCSAMOptions
from ltlib.methods.sam import SAMOptions
from ltlib.methods.step import build_sgd, build_step
from ltlib.runs.train import fit

BATCH, EPOCHS, LR, RHO = 12, 2, 0.1, 0.5
TAIL = (2,)          # ImbSAM's tail: the rarest class
COUNTS, CCSAM_R = (30, 12, 6), 0.5   # CC-SAM: the training counts, and a radius at which eps_c bites


def toy_data() -> ImageSet:
    """48 random 1 x 4 x 4 images in 3 classes of 30 / 12 / 6 (4 global batches of 12 per epoch)."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (48, 1, 4, 4), dtype=torch.uint8, generator=g)
    labels = torch.tensor([0] * 30 + [1] * 12 + [2] * 6)
    return ImageSet(images, labels, ("a", "b", "c"))


class ToyNet(nn.Module):
    """Linear-Tanh-Linear, split into ``features`` and a linear ``classifier`` as ltlib's models are (CC-SAM)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh())
        self.classifier = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class FeatureToyNet(ToyNet):
    """ToyNet whose forward also returns the features on request, as ltlib's models do (CC-SAM's compiled path);
    ToyNet's own forward keeps CC-SAM's other DDP path, the features caught by a hook, under test."""

    def forward(self, x: torch.Tensor, with_features: bool = False):
        feats = self.features(x)
        logits = self.classifier(feats)
        return (feats, logits) if with_features else logits


def toy_model(with_features: bool = False) -> nn.Module:
    torch.manual_seed(0)
    return FeatureToyNet() if with_features else ToyNet()


def loss_fn(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, labels, reduction="none")


def toy_loader(info: DistInfo = DistInfo()):
    loader = DeviceLoader(toy_data(), batch_size=BATCH, mean=(0.5,), std=(0.25,), seed=0)   # no augmentation
    return ShardedLoader(loader, info) if info.enabled else loader


def options(step_name: str, perturbation: str) -> SAMOptions | CCSAMOptions:
    if step_name == "ccsam":
        return CCSAMOptions(class_counts=COUNTS, radius=CCSAM_R, flat_ratio=0.5, perturbation=perturbation)
    return SAMOptions(rho=RHO, tail_classes=TAIL, perturbation=perturbation)


def train(step_name: str, perturbation: str = "replica", info: DistInfo = DistInfo(), compile: bool = False
          ) -> nn.Module:
    model = toy_model(with_features=compile)
    optimizer = build_sgd(model, lr=LR, momentum=0.9, weight_decay=5e-4)
    step = build_step(step_name, optimizer, model=model, options=options(step_name, perturbation))
    fit(wrap_model(model, info, compile=compile), toy_loader(info), step, loss_fn, lambda epoch, i, steps: LR, epochs=EPOCHS,
        progress=False)
    return model


if __name__ == "__main__":
    out_dir, cases = sys.argv[1], sys.argv[2:]
    info = init_from_env()
    for case in cases:                  # one launch, several trainings: torch starts once per process
        step_name, perturbation, *compiled = case.split(":")
        trained = train(step_name, perturbation, info, compile=compiled == ["compile"])
        if info.is_main:
            torch.save(trained.state_dict(), f"{out_dir}/{case.replace(':', '-')}.pt")
    torch.distributed.destroy_process_group()
