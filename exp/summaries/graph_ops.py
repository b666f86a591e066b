"""How many device operations a captured step leaves outside its CUDA graph (issue 25).

``graph_step=True`` captures the forward, the backward, SAM's ascent and restore and the optimizer step; the loader's
augmentation and mixing run before it, launched from Python. This counts, on the CPU, the aten operations of each part
(each is about one kernel launch on CUDA) for the CIFAR-100-LT paper recipes (ResNet-32, batch 128, random images of
CIFAR-100-LT's shape and counts), and writes graph_ops.json beside this file:
    python exp/summaries/graph_ops.py
A count, not a time: launch overhead scales with it, but no GPU time has been measured.
"""
import json
from collections import Counter
from datetime import date
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ltlib.core.env import environment
from ltlib.devicecheck import synthetic_longtail
from ltlib.runs.config import make_config
from ltlib.runs.setup import build_stage1
from ltlib.runs.train import begin_epoch

RECIPES = {"CE": dict(recipe="ce"), "CE + mixup": dict(recipe="ce", mixing="mixup"),
           "BS + CMO": dict(recipe="cmo", loss="bs", mixing="cmo", cmo_prob=1.0, cmo_start=0),
           "SAM": dict(recipe="ce", step="sam"), "CC-SAM + mixup": dict(recipe="ccsam")}
SKIP = {"aten.detach.default", "aten.alias.default", "aten.view.default", "aten._unsafe_view.default",
        "aten.t.default", "aten.expand.default", "aten.permute.default", "aten.slice.Tensor", "aten.select.int",
        "aten.unsqueeze.default", "aten.squeeze.dim", "aten.as_strided.default", "aten._reshape_alias.default"}


class Count(TorchDispatchMode):
    """Count the aten operations that run a kernel (views and aliases excluded: they launch nothing)."""

    def __init__(self):
        super().__init__()
        self.ops = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if str(func) not in SKIP:
            self.ops[str(func)] += 1
        return func(*args, **(kwargs or {}))


def count(label: str, overrides: dict, data) -> dict:
    config = make_config("paper", dataset="cifar100_lt", test_per_class=None, optimizer_impl="fused",
                         **overrides)
    setup = build_stage1(config, data, torch.device("cpu"))
    begin_epoch(5, setup.step, setup.loss_fn)
    batches = setup.loader.epoch(5)
    for _ in range(3):                    # the third batch: caches filled, momentum buffers made
        outside = Count()
        with outside:
            images, targets = next(batches)
        inside = Count()
        with inside:
            setup.step(setup.model, images, targets, setup.loss_fn)
    out, ins = sum(outside.ops.values()), sum(inside.ops.values())
    return dict(label=label, overrides=overrides, outside_graph=out, inside_graph=ins,
                outside_share_percent=100 * out / (out + ins), outside_ops=dict(outside.ops.most_common()))


torch.set_num_threads(2)
data = synthetic_longtail("cifar100_lt")
rows = [count(label, kw, data) for label, kw in RECIPES.items()]
env = environment(torch.device("cpu"))
Path(__file__).with_name("graph_ops.json").write_text(json.dumps(
    {"command": "python exp/summaries/graph_ops.py", "commit": env["git_commit"], "torch": env["torch"],
     "cpu": env["cpu"], "written": date.today().isoformat(),
     "setting": "paper profile, cifar100_lt (random images of its shape and counts), ResNet-32, batch 128, epoch 6, "
                "third batch; aten ops counted on the CPU, views excluded", "rows": rows}, indent=1) + "\n")
for r in rows:
    print(f"{r['label']:16s} outside the graph {r['outside_graph']:4d}  inside {r['inside_graph']:5d}  "
          f"({r['outside_share_percent']:.1f} % outside)")
