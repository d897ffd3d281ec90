"""The README's conditional-VAE figures: does a classifier of real images see the class that was asked for?

Trains `vaekit train --conditional` on a labelled source (default Fashion-MNIST), fits scikit-learn's logistic
regression on the real training images, and prints its accuracy on: the real test images (the ceiling),
samples of each class (`sample --label`), and test images converted to another class (`convert`: each image
to the class after its own). It writes the analogy grid (`convert --to-label all`) and a grid of samples,
a row per class, beside the run.

    python benchmarks/convert.py                                     # Fashion-MNIST, 20 epochs: ~5 minutes
    python benchmarks/convert.py --data digits --epochs 30           # the embedded digits, seconds
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from commands import vaekit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--work", type=Path, default=Path("runs/convert-benchmark"))
    parser.add_argument("--per-class", type=int, default=200, help="samples of each class to classify")
    args = parser.parse_args(argv)
    from sklearn.linear_model import LogisticRegression

    from vaekit.runs.trained import TrainedVAE

    run = args.work / "run"
    started = time.perf_counter()
    vaekit("train", "--data", args.data, "--conditional", "--epochs", str(args.epochs), "--out", str(run),
           "--overwrite", "--quiet")
    seconds = time.perf_counter() - started
    trained = TrainedVAE(run)
    train_x, train_y = trained.load_inputs(split="train")
    test_x, test_y = trained.load_inputs(split="test")
    flat = lambda images: images.reshape(len(images), -1) / 255.0  # noqa: E731
    started = time.perf_counter()
    classifier = LogisticRegression(max_iter=300).fit(flat(train_x), train_y)
    fit_seconds = time.perf_counter() - started
    classes = trained.model.classes
    asked = np.repeat(np.arange(classes), args.per_class)
    samples = trained.sample(len(asked), seed=1, labels=asked)
    targets = (test_y + 1) % classes
    converted = trained.convert(test_x, test_y, targets)
    real = (classifier.predict(flat(test_x)) == test_y).mean()
    sampled = (classifier.predict(flat(samples)) == asked).mean()
    kept = (classifier.predict(flat(converted)) == targets).mean()
    vaekit("convert", str(run), "--to-label", "all", "--n", "10", "--out", str(args.work / "analogies.png"),
           "--overwrite")
    vaekit("sample", str(run), "--per-label", "10", "--out", str(args.work / "per-class.png"), "--overwrite")
    results = trained.results or {}
    print(f"data        {trained.data.description}: {len(train_x)} training, {len(test_x)} test images")
    print(f"training    {args.epochs} epochs in {seconds:.0f} s; test -ELBO of log p(x|y) "
          f"{-results.get('test_elbo', float('nan')):.2f} nats")
    print(f"classifier  logistic regression on the real training images ({fit_seconds:.0f} s)")
    print(f"accuracy    real test images {real:.3f}; samples of the asked class {sampled:.3f} "
          f"({len(asked)}); test images converted to the next class {kept:.3f} ({len(test_x)})")
    print(f"wrote       {args.work / 'analogies.png'}, {args.work / 'per-class.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
