"""The sections of a text run's report: sentences sampled three ways, reconstructions, homotopies (Bowman
et al.'s Table 8), the KL of each latent dimension and the test sentences' codes."""

from __future__ import annotations

import html

import numpy as np

from vaekit.model import latent_paths
from vaekit.reporting import latent_pictures as latent
from vaekit.reporting.report_page import Section, figure, table
from vaekit.runs.trained import TrainedVAE

SENTENCES = 10  # per way of sampling
RECONSTRUCTIONS = 12
HOMOTOPIES, HOMOTOPY_STEPS = 3, 7
BEAM = 4


def text_sections(run: TrainedVAE, lines: list[str] | None, missing: str) -> list[Section]:
    """The report's sections for a text run; `lines` are test sentences (None: the data could not be read,
    for the reason `missing`)."""
    sections = [_samples(run)]
    if not lines:
        why = missing or "the run's test split is empty"
        return sections + [Section(key, title, f"<p>Left out: {html.escape(why)}</p>") for key, title in
                           (("reconstructions", "Reconstructions"), ("homotopies", "Homotopies"),
                            ("kl", "KL per dimension"), ("latent", "Latent space"))]
    loc, _ = run.text.encode(lines)
    kl = run.text.kl_per_dimension(lines)
    return sections + [_reconstructions(run, lines), _homotopies(run, lines), _kl(kl, len(lines)),
                       _latent(loc)]


def _quoted(lines: list[str]) -> list[list[str]]:
    return [[str(i + 1), line or "(empty)"] for i, line in enumerate(lines)]


def _samples(run: TrainedVAE) -> Section:
    seed = run.config.train.seed
    ways = [("greedy: the likeliest word at each step", run.text.sample(SENTENCES, seed=seed)),
            ("drawn: each word drawn from p(xₜ | x<ₜ, z)", run.text.sample(SENTENCES, seed=seed, temperature=1.0)),
            (f"beam search of width {BEAM}", run.text.sample(SENTENCES, seed=seed, beam=BEAM))]
    body = "<p>Sentences decoded from the same codes z ~ p(z) = N(0, I), three ways (vaekit sample).</p>"
    body += "".join(f"<h3>{html.escape(way)}</h3>" + table(["", "sentence"], _quoted(lines))
                    for way, lines in ways)
    return Section("samples", "Samples", body)


def _reconstructions(run: TrainedVAE, lines: list[str]) -> Section:
    pairs = run.text.reconstruct(lines[:RECONSTRUCTIONS])
    rows = [[given, output] for given, output in pairs]
    body = ("<p>Test sentences (as the run's tokenizer reads them) and their reconstructions: decoded greedily "
            "from the posterior mean z = μ(x).</p>" + table(["input", "reconstruction"], rows))
    return Section("reconstructions", "Reconstructions", body)


def _homotopies(run: TrainedVAE, lines: list[str]) -> Section:
    if len(lines) < 2:
        return Section("homotopies", "Homotopies", "<p>A homotopy needs two test sentences.</p>")
    pairs = min(HOMOTOPIES, len(lines) // 2)
    body = (f"<p>Homotopies (Bowman et al.'s Table 8): the sentences decoded greedily at {HOMOTOPY_STEPS} equal "
            "steps on the straight line between two test sentences' posterior means (vaekit interpolate).</p>")
    for i in range(pairs):
        path = run.text.interpolate(lines[i], lines[pairs + i], steps=HOMOTOPY_STEPS)
        body += f"<h3>test {i + 1} → {pairs + i + 1}</h3>" + table(["step", "sentence"], _quoted(path))
    return Section("homotopies", "Homotopies", body)


def _kl(kl: np.ndarray, count: int) -> Section:
    active = int((kl > latent_paths.ACTIVE_KL).sum())
    caption = (f"KL(q(zⱼ|x) ‖ p(zⱼ)) of each latent dimension j, averaged over {count:,} test sentences: {active} "
               f"of {len(kl)} above {latent_paths.ACTIVE_KL:g} nats. All near 0 is posterior collapse: the decoder "
               "ignores z (see the language-model baseline, vaekit train --language-model).")
    return Section("kl", "KL per dimension", figure(latent.kl_png(kl, latent_paths.ACTIVE_KL), caption, "KL"))


def _latent(loc: np.ndarray) -> Section:
    if len(loc) < 3:
        return Section("latent", "Latent space", "<p>Too few test sentences to draw their codes.</p>")
    codes2d, axes = latent_paths.project(loc)
    png = latent.latent_scatter_png(codes2d, None, None, axes, f"posterior means μ(x) of {len(loc):,} test sentences")
    return Section("latent", "Latent space", figure(png, f"The posterior mean μ(x) of each of {len(loc):,} test "
                                                         "sentences, in two dimensions (PCA beyond two).", "latent"))
