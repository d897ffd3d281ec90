"""The README's sound figures: a VAE of spoken digits synthesized by espeak-ng, measured end to end.

Makes the folder (tools/spoken_digits.py: 10 digits x voices x 3 speeds x 3 pitches), trains on it with
vaekit's defaults for sound (the conv net over log-magnitude spectrograms), and prints, on the test split:
the importance-sampled NLL per clip and per spectrogram bin, the ELBO and its KL, active units, and the
reconstruction error in dB (20 log10 of |S_rec - S| / |S| over magnitudes, so -20 dB is an error a tenth of
the signal), with the same error of the test clips' mean spectrogram as a baseline. It writes the
latent scatter coloured by digit and a few WAVs beside the run.

    python benchmarks/spoken_digits.py                    # 540 clips, 60 epochs: about 10 minutes on 2 cores
    python benchmarks/spoken_digits.py --voices 2 --epochs 10 --importance-samples 100   # a quick look
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from commands import made_by_tool, vaekit


def reconstruction_db(run: Path) -> tuple[float, float]:
    """The test split's reconstruction error in dB, and that of predicting every clip by the mean spectrogram."""
    from vaekit.runs.trained import TrainedVAE

    trained = TrainedVAE(run)
    x, _ = trained.load_inputs()
    magnitude, rebuilt = np.exp(x), np.exp(trained.reconstruct(x))
    mean = np.exp(x).mean(axis=0, keepdims=True)

    def db(estimate: np.ndarray) -> float:
        return float(20 * np.log10(np.linalg.norm(estimate - magnitude) / np.linalg.norm(magnitude)))

    return db(rebuilt), db(np.broadcast_to(mean, magnitude.shape))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("runs/spoken-digits-benchmark"))
    parser.add_argument("--voices", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--importance-samples", type=int, default=1000)
    args = parser.parse_args(argv)
    folder = made_by_tool(args.work / "clips", "spoken_digits.py", "--voices", str(args.voices))
    run = args.work / "run"
    started = time.perf_counter()
    vaekit("train", "--data", str(folder), "--out", str(run), "--epochs", str(args.epochs), "--batch-size", "32",
           "--overwrite", "--quiet")
    seconds = time.perf_counter() - started
    figures = json.loads(vaekit("evaluate", str(run), "--importance-samples", str(args.importance_samples), "--json",
                                "--quiet"))
    vaekit("latents", str(run), "--out", str(args.work / "latents.png"), "--overwrite")
    vaekit("sample", str(run), "--n", "8", "--out", str(args.work / "samples"), "--overwrite")
    error_db, baseline_db = reconstruction_db(run)
    bins = figures["data_dimensions"]
    print(f"data          {folder}: {json.loads((run / 'config.json').read_text())['data']['counts']}, "
          f"spectrograms of {bins} bins")
    print(f"training      {args.epochs} epochs in {seconds:.0f} s")
    print(f"test NLL      {figures['nll']:.1f} nats per clip, {figures['nll'] / bins:.4f} per bin "
          f"(K = {figures['importance_samples']})")
    print(f"test ELBO     {figures['elbo']:.1f} nats per clip, KL {figures['kl']:.1f}; "
          f"active units {figures['active_units']} of {figures['latent_dim']}")
    print(f"reconstructed {error_db:.1f} dB error (the mean spectrogram: {baseline_db:.1f} dB)")
    print(f"wrote         {args.work / 'latents.png'}, {args.work / 'samples'}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
