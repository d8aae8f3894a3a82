"""The ROI ops' CPU kernels of two source trees, side by side in one process.

    python benchmarks/compare_roi_builds.py [BASE_REVISION] [ROUNDS]

Builds ``csrc/ops`` of git revision BASE_REVISION (default ``HEAD``) and of the working tree
with the same compiler flags as the first-use build (``-O3 -fopenmp``), each under its own op
namespace and C++ namespace (``lidplug_base``, ``lidplug_head``), so both libraries load into
one process. Then times the fused loss forward + backward (``_roi_perceptual_loss_forward`` and
``roi_perceptual_loss_backward``, as autograd calls them) and ``roi_pool`` forward + backward on
the CPU shapes of ``test_bench_roi_ops.py``. Each round times one call of each build, back to
back, in alternating order, so both see the same background load; it prints each build's
median and the median and quartiles of the per-round ratio ``base / head`` (above 1: the
working tree is faster), in wall time and in the calling thread's CPU time. With one thread
(``OMP_NUM_THREADS=1``) the kernels run in the calling thread, and its CPU time leaves out the
time other processes hold the core: on a shared machine that ratio is the steadier one. The build folders are kept in ``$LIDPLUG_COMPARE_DIR`` (default: a
folder under the system's temporary directory).
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from test_bench_roi_ops import CASES, _inputs
from torch.utils.cpp_extension import load

ROOT = Path(__file__).resolve().parent.parent


def _sources(revision: str | None) -> dict[str, str]:
    """Path -> text of csrc/ops/**.{cpp,h} at ``revision`` (None: the working tree)."""
    if revision is None:
        return {str(p.relative_to(ROOT)): p.read_text() for p in (ROOT / "csrc" / "ops").rglob("*")
                if p.suffix in {".cpp", ".h"}}
    names = subprocess.run(["git", "ls-tree", "-r", "--name-only", revision, "csrc/ops"],
                           cwd=ROOT, check=True, capture_output=True, text=True).stdout.split()
    return {n: subprocess.run(["git", "show", f"{revision}:{n}"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout
            for n in names if n.endswith((".cpp", ".h"))}


def _build(revision: str | None, namespace: str, folder: Path):
    """Compiles the CPU sources under ``namespace`` and returns ``torch.ops.<namespace>``."""
    src = folder / "src"
    for name, text in _sources(revision).items():
        # Every identifier that starts with `lidplug` (C++ namespaces, op namespaces such as
        # lidplug_cuda_emulated, "lidplug::op" strings): no symbol or op name is shared.
        path = src / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(re.sub(r"\blidplug", namespace, text))
    sources = sorted(str(p) for p in (src / "csrc" / "ops").glob("*.cpp"))
    sources += sorted(str(p) for p in (src / "csrc" / "ops" / "cpu").glob("*.cpp"))
    build = folder / "build"
    build.mkdir(exist_ok=True)
    load(name=f"{namespace}_ops", sources=sources, extra_cflags=["-O3", "-fopenmp"],
         extra_ldflags=["-fopenmp"], build_directory=str(build), is_python_module=False)
    return getattr(torch.ops, namespace)


def _steps(ops, case: str):
    device, *shape = CASES[case]
    feats, refs, _, rois, scales = _inputs(device, *shape)
    feats = [t.detach() for t in feats]
    batch, channels = feats[0].shape[:2]
    heights, widths = [t.shape[2] for t in feats], [t.shape[3] for t in feats]
    one = torch.tensor(1.0)

    def loss():
        _, diff = ops._roi_perceptual_loss_forward(feats, refs, rois, scales, 7, 7, 2, False,
                                                   "mean")
        return ops.roi_perceptual_loss_backward(one, diff, rois, scales, batch, channels,
                                                heights, widths, 2, False, "mean", False, False,
                                                torch.float32)

    def pool():
        out = ops.roi_pool(feats, rois, scales, 7, 7, 2, False)
        return ops.roi_pool_backward(out, rois, scales, batch, channels, heights, widths, 2,
                                     False, False, torch.float32)

    return loss, pool


def _paired(base, head, rounds: int, clock, warmup: int = 2):
    """Median seconds of each by ``clock``, and the per-round ratios base / head."""
    times = {"base": [], "head": []}
    for r in range(warmup + rounds):
        order = (("base", base), ("head", head)) if r % 2 else (("head", head), ("base", base))
        for name, run in order:
            start = clock()
            run()
            if r >= warmup:
                times[name].append(clock() - start)
    ratios = [b / h for b, h in zip(times["base"], times["head"], strict=True)]
    return statistics.median(times["base"]), statistics.median(times["head"]), ratios


def main() -> None:
    revision = sys.argv[1] if len(sys.argv) > 1 else "HEAD"
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    root = Path(os.environ.get("LIDPLUG_COMPARE_DIR") or tempfile.mkdtemp(prefix="lidplug-cmp-"))
    builds = {"base": _build(revision, "lidplug_base", root / "base"),
              "head": _build(None, "lidplug_head", root / "head")}
    print(f"base {revision} vs working tree; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    for case, (device, *shape) in CASES.items():
        if device != "cpu":
            continue
        base, head = (_steps(builds[name], case) for name in ("base", "head"))
        for which, label in enumerate(("loss fwd+bwd", "roi_pool fwd+bwd")):
            n = rounds if shape[-1] <= 8 else max(rounds // 4, 5)
            print(f"{case} {label} (B, C, image, levels, boxes/img = {shape}), {n} rounds:")
            for clock_name, clock in (("wall", time.perf_counter),
                                      ("thread CPU", time.thread_time)):
                t_base, t_head, ratios = _paired(base[which], head[which], n, clock)
                q1, q2, q3 = statistics.quantiles(ratios, n=4)
                print(f"  {clock_name:10s} base {t_base * 1e3:8.2f} ms, head {t_head * 1e3:8.2f} "
                      f"ms, base / head median {q2:.3f} (quartiles {q1:.3f}-{q3:.3f})")


if __name__ == "__main__":
    main()
