"""What the papers report: every published number the series quotes, in one registry, with its source.

Each :class:`Reported` number names the paper, where it was read (the paper, a README, the authors' poster,
a demo notebook's committed outputs; which table) and the setting it was measured in, with a link. The
notebooks and the README read them from here (:func:`reported`, :func:`reference_column`), and label them as
reported, never as measured by ltlib. The numbers and their sources are the ones catalogued in the
project's algorithms notes (``research/algorithms.md``: §2.7 weight balancing, §3.6 CC-SAM, §4.5 ImbSAM,
§5.4 CMO).

    >>> reported("wb/stage1-wd").value
    47.9
"""
from __future__ import annotations

from dataclasses import dataclass

from ..core.errors import ConfigError


@dataclass(frozen=True)
class Paper:
    """A paper the series follows: its short name, title, venue and links to the paper and the code."""

    key: str
    title: str
    venue: str
    paper_url: str
    code_url: str = ""


@dataclass(frozen=True)
class Reported:
    """One published accuracy (top-1, %) and where it comes from."""

    key: str
    paper: str                 # a key of PAPERS
    method: str                # as the source names it
    value: float
    metric: str = "overall"    # overall / many / medium / few
    dataset: str = "CIFAR-100-LT"
    imbalance_factor: int | None = 100   # None: not stated by the source
    source: str = ""           # where the number was read: paper table, README, poster, demo notebook outputs
    setting: str = ""          # network, epochs, evaluation protocol

    @property
    def link(self) -> str:
        paper = PAPERS[self.paper]
        return paper.code_url or paper.paper_url

    def cite(self) -> str:
        """A short citation: ``"47.9 (WB demo notebook outputs, CIFAR-100-LT IF 100)"``."""
        return f"{self.value:g} ({self.source}, {self.where})"

    @property
    def where(self) -> str:
        """The data set and imbalance factor, e.g. ``"CIFAR-100-LT IF 100"``."""
        return self.dataset if self.imbalance_factor is None else f"{self.dataset} IF {self.imbalance_factor}"


PAPERS = {p.key: p for p in (
    Paper("wb", "Long-Tailed Recognition via Weight Balancing (Alshammari et al.)", "CVPR 2022",
          "https://arxiv.org/abs/2203.14197", "https://github.com/ShadeAlsha/LTR-weight-balancing"),
    Paper("imbsam", "ImbSAM: A Closer Look at Sharpness-Aware Minimization in Class-Imbalanced Recognition "
          "(Zhou et al.)", "ICCV 2023", "https://arxiv.org/abs/2308.07815", "https://github.com/cool-xuan/Imbalanced_SAM"),
    Paper("ccsam", "Class-Conditional Sharpness-Aware Minimization for Deep Long-Tailed Recognition (Zhou et al.)",
          "CVPR 2023", "https://github.com/zzpustc/CC-SAM", "https://github.com/zzpustc/CC-SAM"),
    Paper("cmo", "The Majority Can Help the Minority: Context-rich Minority Oversampling for Long-tailed "
          "Classification (Park et al.)", "CVPR 2022", "https://arxiv.org/abs/2112.00412", "https://github.com/naver-ai/cmo"),
    Paper("saddle", "Escaping Saddle Points for Effective Generalization on Class-Imbalanced Data (Rangwani et al.)",
          "NeurIPS 2022", "https://arxiv.org/abs/2212.13827", "https://github.com/val-iisc/Saddle-LongTail"),
)}

_WB = dict(paper="wb", source="WB demo notebook outputs",
           setting="ResNet-34 variant (21M parameters), 320 epochs (+10 in stage 2), flip TTA, best epoch on test")
_IMBSAM = dict(paper="imbsam", source="ImbSAM README, PyTorch table",
               setting="WB's ResNet-34 variant, 200 epochs, flip TTA, best epoch on test")
_CCSAM = dict(paper="ccsam", source="CC-SAM poster", setting="ResNet-32, 200 (+30) epochs, best epoch on test")
_CMO = dict(paper="cmo", source="CMO paper, Table 2 (as quoted in the repository's issues)",
            setting="ResNet-32, 200 epochs, best epoch on test")


def _groups(prefix: str, method: str, values: tuple[float, float, float, float], **common) -> list[Reported]:
    return [Reported(f"{prefix}" if metric == "overall" else f"{prefix}:{metric}", method=method, value=v,
                     metric=metric, **common)
            for metric, v in zip(("overall", "many", "medium", "few"), values)]


REPORTED: dict[str, Reported] = {r.key: r for r in (
    # weight balancing, demo notebook outputs (algorithms.md §2.7)
    *_groups("wb/stage1-no-wd", "cross-entropy, no WD (\"naive\")", (40.0, 67.4, 38.1, 10.4), **_WB),
    *_groups("wb/stage1-wd", "cross-entropy, WD 5e-3", (47.9, 78.0, 46.9, 13.9), **_WB),
    *_groups("wb/l2-norm", "+ L2-norm of the classifier (post-hoc)", (51.0, 77.0, 50.3, 21.6), **_WB),
    *_groups("wb/tau-norm", "+ τ-norm, τ = 1.9 (post-hoc)", (52.6, 74.1, 48.8, 32.0), **_WB),
    *_groups("wb/stage2", "stage 2: CB loss + WD 0.1 + MaxNorm, per epoch", (53.1, 72.2, 49.6, 34.9), **_WB),
    # ImbSAM README (algorithms.md §4.5): many / medium / few / all
    *_groups("imbsam/sgd", "SGD", (47.6, 77.8, 46.6, 13.5), **_IMBSAM),
    *_groups("imbsam/sam", "SAM", (48.9, 79.7, 49.3, 12.4), **_IMBSAM),
    *_groups("imbsam/imbsam", "ImbSAM", (51.1, 75.9, 53.5, 19.4), **_IMBSAM),
    Reported("imbsam/sgd-mindspore", "imbsam", "SGD", 36.5, source="ImbSAM README, MindSpore table",
             setting="MindSpore port of the same pipeline"),
    Reported("imbsam/sam-mindspore", "imbsam", "SAM", 38.0, source="ImbSAM README, MindSpore table",
             setting="MindSpore port of the same pipeline"),
    Reported("imbsam/imbsam-mindspore", "imbsam", "ImbSAM", 40.7, source="ImbSAM README, MindSpore table",
             setting="MindSpore port of the same pipeline"),
    # CC-SAM poster, CIFAR-LT at IF 100 (algorithms.md §3.6.3) and its ablation (§3.6.5, data set not stated)
    Reported("ccsam/ce", method="CE", value=38.43, **_CCSAM),
    Reported("ccsam/mixup", method="CE + Mixup", value=40.01, **_CCSAM),
    Reported("ccsam/ldam-drw", method="LDAM-DRW", value=42.04, **_CCSAM),
    Reported("ccsam/mixup-crt", method="CE + Mixup + cRT", value=45.12, **_CCSAM),
    Reported("ccsam/ccsam", method="CC-SAM", value=50.83, **_CCSAM),
    Reported("ccsam/ce-c10", method="CE", value=70.70, dataset="CIFAR-10-LT", **_CCSAM),
    Reported("ccsam/mixup-c10", method="CE + Mixup", value=72.96, dataset="CIFAR-10-LT", **_CCSAM),
    Reported("ccsam/mixup-crt-c10", method="CE + Mixup + cRT", value=79.15, dataset="CIFAR-10-LT", **_CCSAM),
    Reported("ccsam/ccsam-c10", method="CC-SAM", value=83.92, dataset="CIFAR-10-LT", **_CCSAM),
    *(Reported(f"ccsam/ablation-{name}", "ccsam", method, value, dataset="data set not stated", imbalance_factor=None,
               source="CC-SAM poster, ablation", setting="data set and imbalance factor not stated")
      for name, method, value in (("crt", "cRT", 37.8), ("dir", "cRT + stage-1 direction", 38.9),
                                  ("mag", "cRT + stage-1 magnitude", 37.5),
                                  ("dir-mag", "cRT + stage-1 direction and magnitude", 40.1),
                                  ("stage2", "cRT + stage 1 + stage 2", 40.6))),
    # CMO paper, Table 2 (algorithms.md §5.4)
    Reported("cmo/ce", method="CE", value=38.6, **_CMO),
    Reported("cmo/ce-cmo", method="CE + CMO", value=43.9, **_CMO),
    Reported("cmo/bs-cmo", method="BS + CMO", value=46.6, **_CMO),
    Reported("cmo/ldam-drw-cmo", method="LDAM-DRW + CMO", value=47.2, **_CMO),
)}


def reported(key: str) -> Reported:
    """The reported number ``key``; an unknown key lists the valid ones."""
    if key not in REPORTED:
        raise ConfigError(f"no reported number {key!r}. Known: {', '.join(sorted(REPORTED))}")
    return REPORTED[key]


def reference_column(keys: dict[str, str], labels, metric: str = "overall") -> list[str]:
    """A table column of reported numbers: for each of ``labels``, the value of ``keys[label]`` (on ``metric``),
    or "" where the label has none."""
    out = []
    for label in labels:
        key = keys.get(label)
        if key is None:
            out.append("")
            continue
        out.append(f"{reported(key if metric == 'overall' else f'{key}:{metric}').value:g}")
    return out


def sources(keys) -> str:
    """A Markdown list of the sources of the reported numbers ``keys``: paper, venue, where read, setting, link."""
    seen = {}
    for key in keys:
        r = reported(key)
        seen.setdefault((r.paper, r.source, r.setting, r.where), r)
    lines = []
    for (paper_key, source, setting, where), r in seen.items():
        paper = PAPERS[paper_key]
        lines.append(f"- {source}: [{paper.title}, {paper.venue}]({paper.paper_url}) ([code]({r.link})); "
                     f"{where}; {setting}.")
    return "\n".join(lines)
