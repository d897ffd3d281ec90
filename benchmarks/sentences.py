"""The README's text figures: a sentence VAE of Debian's fortunes beside its language-model baseline.

Makes the corpus (tools/fortunes.py: fortunes of at most 20 words, one per line), trains the sentence VAE with
vaekit's defaults for text (word tokens, GRU encoder and decoder, word dropout 0.3, KL warm-up over a third of
the epochs) and the language model (`--language-model`: the same decoder without z) with the same budget,
then prints for each, on the test split: the NLL per sentence by importance sampling (K samples; exact for the
language model, whose q(z|x) is the prior), the NLL per token and the perplexity, the KL term and the active
units; and, for the VAE, sentences sampled three ways, reconstructions and a homotopy.

    python benchmarks/sentences.py                        # 20 epochs each: about 10 minutes on 2 cores
    python benchmarks/sentences.py --epochs 3 --importance-samples 20     # a quick look
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from commands import made_by_tool, vaekit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("runs/sentences-benchmark"))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--vocab-size", type=int, default=5000)
    parser.add_argument("--importance-samples", type=int, default=200)
    args = parser.parse_args(argv)
    corpus = made_by_tool(args.work / "fortunes.txt", "fortunes.py")
    budget = ["--epochs", str(args.epochs), "--vocab-size", str(args.vocab_size), "--patience", str(args.epochs),
              "--quiet", "--overwrite"]
    figures = {}
    for name, extra in (("vae", []), ("language model", ["--language-model"])):
        run = args.work / name.replace(" ", "-")
        vaekit("train", "--data", str(corpus), "--out", str(run), *budget, *extra)
        figures[name] = json.loads(vaekit("evaluate", str(run), "--importance-samples", str(args.importance_samples),
                                          "--json", "--quiet"))
        figures[name]["train_seconds"] = json.loads((run / "results.json").read_text())["train_seconds"]
    print(f"{corpus}: test split of {figures['vae']['examples']} sentences, {figures['vae']['tokens']} tokens "
          f"(</s> included); K = {args.importance_samples}; {args.epochs} epochs each")
    print(f"{'model':<16}{'NLL/sentence':>14}{'NLL/token':>11}{'perplexity':>12}{'KL':>8}{'active':>8}{'train s':>9}")
    for name, f in figures.items():
        print(f"{name:<16}{f['nll']:>14.2f}{f['nll_per_token']:>11.4f}{f['perplexity']:>12.2f}{f['kl']:>8.2f}"
              f"{f['active_units']:>5} of {f['latent_dim']:<2}{f['train_seconds']:>7.0f}")
    vae = args.work / "vae"
    for how, flags in (("greedy", []), ("beam 5", ["--beam", "5"]), ("drawn, T = 1", ["--temperature", "1"])):
        print(f"\nsamples ({how}):")
        print(vaekit("sample", str(vae), "--n", "5", "--seed", "1", *flags).rstrip())
    print("\nreconstructions (input, then its greedy decoding from μ(x)):")
    print(vaekit("reconstruct", str(vae), "--n", "6").rstrip())
    print("\na homotopy (Bowman et al.'s Table 8):")
    print(vaekit("interpolate", str(vae), "--pairs", "1", "--seed", "3", "--steps", "7").rstrip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
