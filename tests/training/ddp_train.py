"""Run under torchrun by test_ddp.py: a short collaborative run on 2 gloo processes.

Each rank reports a checksum of both models; rank 0 writes them to <out>/ranks.json.
"""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parent.parent)]
from train_setup import phantoms, tiny_model  # noqa: E402

from lidplug import CollaborativeTrainer, TrainConfig  # noqa: E402


def checksum(module):
    # Parameters only: DDP keeps them identical; BatchNorm statistics are broadcast from rank 0
    # before each forward, so after the last one every rank holds its own batch's update.
    return float(sum(p.double().sum() for p in module.parameters()))


def main(out: str) -> None:
    cfg = TrainConfig(detector_pretrain_steps=1, warmup_steps=1, rounds=1, denoiser_steps=2,
                      detector_steps=2, batch_size=2, lr_denoiser=1e-3, lr_detector=1e-3,
                      out_dir=out, checkpoint_every=3, progress=False, device="cpu")
    trainer = CollaborativeTrainer(tiny_model(), phantoms(8), cfg)
    names = ("denoiser", "detector")
    sums = {f"{name}_start": checksum(getattr(trainer.model, name)) for name in names}
    trainer.fit()
    sums.update({name: checksum(getattr(trainer.model, name)) for name in names})
    everyone = trainer.dist.gather({"rank": trainer.dist.rank, "world": trainer.dist.world,
                                    "step": trainer.step, **sums})
    if trainer.dist.is_main:
        Path(out, "ranks.json").write_text(json.dumps(everyone))
    dist.destroy_process_group()


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1])
