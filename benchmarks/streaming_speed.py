"""How fast a streamed image folder feeds training, with 0, 1 and 2 decoding worker processes.

A folder of generated PNG images (64x64 RGB by default, noise so that PNG cannot shrink them) is
read two ways, each timed over whole passes:

1. decoding alone: `stored_batches` over the folder in batches of `--batch-size`, as an epoch
   reads it (images/s that the data path can deliver);
2. one training epoch of the reference MLP (hidden 400, latent 20; `--hidden-sizes` for another)
   on the streamed folder, and, for comparison, on the same images held in memory.

With 0 workers the training process decodes between steps; with N, N processes decode ahead
(a bounded prefetch of 2 batches each) while the model trains. Where decoding is slower than a
step, workers are the difference; on a machine with fewer free cores than workers + 1 they cannot
help. The output says how many cores this process may use, and how busy the machine was.

    python benchmarks/streaming_speed.py                        # 3,000 images, about a minute
    python benchmarks/streaming_speed.py --images 500 --size 32  # a quick look
    python benchmarks/streaming_speed.py --folder photos/        # your own folder
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vaekit.config import DataConfig, ModelConfig, TrainConfig
from vaekit.data.loading import load_data
from vaekit.data.streaming import stored_batches
from vaekit.model.vae import VAE
from vaekit.training.loop import Trainer

WORKER_COUNTS = (0, 1, 2)


def make_folder(folder: Path, images: int, size: int) -> Path:
    rng = np.random.default_rng(0)
    for index in range(images):
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index:06d}.png")
    return folder


def decode_rate(folder: Path, workers: int, batch_size: int) -> float:
    """Images per second that `stored_batches` delivers over the whole folder."""
    images = load_data(DataConfig(source=str(folder), stream=True, validation_fraction=0.0)).raw.x
    batches = [np.arange(start, min(start + batch_size, len(images))) for start in range(0, len(images), batch_size)]
    started = time.perf_counter()
    count = sum(len(batch) for batch in stored_batches(images, batches, workers))
    return count / (time.perf_counter() - started)


def training_rate(folder: Path, stream: bool, workers: int, batch_size: int, hidden: tuple[int, ...]) -> float:
    """Images per second of one training epoch of an MLP (the reference one by default)."""
    config = DataConfig(source=str(folder), stream=stream, workers=workers, validation_fraction=0.0)
    splits = load_data(config)
    torch.manual_seed(0)
    model = VAE(ModelConfig(hidden_sizes=hidden), splits.event_shape, "bernoulli")
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(model, splits, TrainConfig(batch_size=batch_size), Path(run_dir), torch.device("cpu"),
                          progress_bar=False, workers=workers)
        started = time.perf_counter()
        trainer.run_epoch()
        return trainer.progress.examples_in_epoch / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, help="an image folder to read instead of generated images")
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--size", type=int, default=64, help="side of the generated square RGB images")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the training process")
    parser.add_argument("--hidden-sizes", type=lambda text: tuple(int(p) for p in text.split(",")), default=(400,),
                        help="of the MLP (default 400, the reference); a small one, e.g. 32, makes decoding the limit")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.folder or make_folder(Path(scratch), args.images, args.size)
        rows = {"cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
                "load_average": os.getloadavg()[0], "torch_threads": args.threads,
                "hidden_sizes": ",".join(map(str, args.hidden_sizes)),
                "folder": str(args.folder or f"{args.images} generated {args.size}x{args.size} RGB PNGs")}
        for workers in WORKER_COUNTS:
            rows[f"decode_{workers}_workers"] = decode_rate(folder, workers, args.batch_size)
        for workers in WORKER_COUNTS:
            rows[f"train_streamed_{workers}_workers"] = training_rate(folder, True, workers, args.batch_size,
                                                                      args.hidden_sizes)
        rows["train_in_memory"] = training_rate(folder, False, 0, args.batch_size, args.hidden_sizes)
    for name, value in rows.items():
        rate = name.startswith(("decode", "train"))
        print(f"{name:>28}  {value:,.0f} images/s" if rate else f"{name:>28}  {value}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
