r"""Train one run from the command line; under ``torchrun`` each process joins the DDP job.

    python -m ltlib.tools.cli --profile quick --recipe ce --set step=sam seed=1
    torchrun --nproc_per_node 8 -m ltlib.tools.cli --profile paper --recipe ce --dataset cifar100_lt
    torchrun --nproc_per_node 8 -m ltlib.tools.cli --profile paper --recipe cmo --dataset imagenet_lt \
        --set loss=bs mixing=cmo

``--set`` takes ``field=value`` pairs (values are read as JSON when they parse, else as text). Every rank
builds the same config; rank 0 prints the result and writes ``exp/``. A finished run is loaded, not retrained.
"""
from __future__ import annotations

import argparse
import json
import sys

import torch.distributed as dist

from ..core.errors import ConfigError, LtlibError
from ..runs.config import make_config
from ..runs.distributed import init_from_env, rank_device
from ..runs.experiment import run


def parse_overrides(pairs: list[str]) -> dict:
    """``["epochs=5", "step=sam"]`` -> ``{"epochs": 5, "step": "sam"}``."""
    out = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects field=value, got {pair!r}")
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the command; ltlib's own errors (a bad config, missing data, a damaged checkpoint, a diverged run) end it
    with one line on stderr and exit status 2, as argparse does for a bad flag. Anything else keeps its traceback."""
    try:
        return _main(argv)
    except LtlibError as err:
        print(f"ltlib: error: {err}", file=sys.stderr)
        return 2


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--recipe", default="ce")
    parser.add_argument("--dataset", default="fashion_mnist_lt")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="config overrides")
    parser.add_argument("--data-dir", default=None,
                        help="the data set's folder (default: its $LTLIB_*_DIR variable, or the standard place)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--exp-dir", default=None)
    args = parser.parse_args(argv)

    config = make_config(args.profile, args.recipe, args.dataset, **parse_overrides(args.set))
    info = init_from_env(device=args.device)
    try:
        result = run(config, exp_dir=args.exp_dir, device=rank_device(info, args.device), data_dir=args.data_dir,
                     progress=info.is_main)
        if info.is_main:
            print(result)
            print(result.path)
    finally:
        if info.enabled:
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
