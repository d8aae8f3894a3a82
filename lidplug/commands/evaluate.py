"""``lidplug evaluate``: a trained checkpoint on the run file's held-out data -> metrics.json."""

from __future__ import annotations

import argparse
import json

from lidplug.cli import CLIError
from lidplug.commands._common import check_device, load_config, user_errors


def run(args: argparse.Namespace) -> int:
    import torch
    from torch.utils.data import Subset

    from lidplug.data import HUWindow
    from lidplug.deploy import load_weights
    from lidplug.experiments import format_summary
    from lidplug.experiments.data import TestSet
    from lidplug.experiments.evaluate import denoise, evaluate_arm

    if not args.checkpoint.is_file():
        raise CLIError(f"--checkpoint {args.checkpoint}: expected a checkpoint file (latest.pt "
                       "of 'lidplug train'), got nothing there")
    device = check_device(args.device)
    rc = load_config(args.config)
    with user_errors():
        dataset = rc.dataset(held_out=True)
        if args.limit is not None:
            dataset = Subset(dataset, range(min(args.limit, len(dataset))))
        if len(dataset) == 0:
            raise ValueError("the held-out set is empty: expected at least one slice")
        denoiser, detector = rc.build_denoiser(), rc.build_detector()
        state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or "detector" not in state:
            raise ValueError(f"--checkpoint {args.checkpoint}: expected a 'lidplug train' "
                             "checkpoint holding 'denoiser' and 'detector'")
        load_weights(denoiser, state)
        detector.load_state_dict(state["detector"])
        test = TestSet(dataset, HUWindow())
    options = dict(resamples=args.resamples, map_resamples=max(args.resamples // 5, 1),
                   device=device)
    metrics = {"low_dose": evaluate_arm(test.low, test, detector, **options).metrics,
               "denoised": evaluate_arm(denoise(denoiser, test.low, device), test, detector,
                                        **options).metrics}
    print(format_summary(metrics))
    if args.out is not None:
        args.out.write_text(json.dumps(metrics, indent=1) + "\n")
        print(f"lidplug evaluate: {len(test)} slices; wrote {args.out}")
    return 0
