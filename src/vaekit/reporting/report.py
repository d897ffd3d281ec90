"""The run report: RUN/report.html, one self-contained page of everything a run can show.

    write_report(TrainedVAE("runs/digits"))          # -> runs/digits/report.html

A section per part of the run (settings to the manifold), each picture inline as a data: URI with a caption
saying what it is (the HTML is report_page.py's), so the page opens from a file:// URL with no network.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vaekit.config import RunConfig
from vaekit.data.source import AUDIO, TABLE
from vaekit.errors import UserError
from vaekit.model import latent_paths
from vaekit.reporting import latent_pictures as latent
from vaekit.reporting.outputs import as_pixels, drawable
from vaekit.reporting.pictures import image_grid, png_bytes
from vaekit.reporting.report_page import Section, figure, page, table
from vaekit.reporting.report_plots import curves_png, histograms_png, loss_png
from vaekit.reporting.report_text import text_sections
from vaekit.reporting.sounds import audio_players
from vaekit.runs.directory import REPORT_FILE, read_evaluations, weights_digest
from vaekit.runs.files import atomic_write_text
from vaekit.runs.trained import TrainedVAE

logger = logging.getLogger(__name__)

REPORT_EXAMPLES = 2000  # test inputs for the KL and the scatter: enough to settle, quick on a CPU
SAMPLES = 64
RECONSTRUCTION_PAIRS, RECONSTRUCTION_COLUMNS = 4, 8  # rows of inputs, each with its reconstructions below
INTERPOLATION_PAIRS, INTERPOLATION_STEPS = 6, 10
TRAVERSED_DIMENSIONS, TRAVERSAL_STEPS, TRAVERSAL_SPAN = 12, 11, 3.0  # more rows than 12 do not fit a screen
MANIFOLD_GRID = 15
TABLE_SAMPLES = 1000  # rows drawn for the histograms: smooth enough to compare with the data
CURVES = 4  # examples drawn as lines for flat arrays
CLIPS = 4  # samples and reconstructions of sound played inline


@dataclass
class _Material:
    """What several sections share: the run, some test inputs (stored form) and the KL of each dimension."""

    run: TrainedVAE
    x: np.ndarray | None  # (N, *event_shape), N <= REPORT_EXAMPLES; None when the data cannot be read
    y: np.ndarray | None  # (N,) labels, if the data has them
    kl: np.ndarray | None  # (D,) nats, averaged over x
    missing: str  # why x is None

    def by_kl(self) -> list[int]:
        """Latent dimensions, most KL first (index order without inputs)."""
        dims = range(self.run.model.latent_dim)
        return list(dims) if self.kl is None else latent_paths.by_kl(self.kl)


def write_report(run: TrainedVAE, path: Path | None = None,
                 inputs: tuple[np.ndarray, np.ndarray | None] | None = None) -> Path:
    """Write the report (default RUN/report.html) atomically and return its path. `inputs` (x, y) are the
    test split when the caller has it at hand (training does); otherwise it is read as the run was."""
    path = Path(path) if path is not None else run.run_dir / REPORT_FILE
    atomic_write_text(path, build_report(run, inputs))
    return path


def build_report(run: TrainedVAE, inputs: tuple[np.ndarray, np.ndarray | None] | None = None) -> str:
    """The report as one HTML document (str)."""
    title = f"vaekit run {run.run_dir.name}: {run.data.description}"
    if run.text is not None:
        lines, missing = _test_lines(run, inputs)
        return page(title, [_settings(run), _data(run), _loss(run), _test_figures(run),
                            *text_sections(run, lines, missing)])
    material = _material(run, inputs)
    sections = [_settings(run), _data(run), _loss(run), _test_figures(run), _samples(material),
                _reconstructions(material), _interpolations(material), _traversals(material),
                _kl_section(material), _latent_scatter(material)]
    if drawable(run.data):  # a conditional run's traversals and manifold decode with its first class
        sections.append(_manifold(material))
    return page(title, sections)


def _test_lines(run: TrainedVAE, inputs: tuple[np.ndarray, np.ndarray | None] | None) -> tuple[list[str] | None, str]:
    """Up to REPORT_EXAMPLES test sentences of a text run, or None and why not."""
    if inputs is None:
        try:
            inputs = run.load_inputs()
        except UserError as error:
            logger.warning("the report leaves out what needs the run's data: %s", error)
            return None, str(error)
    return run.codec.decode(np.asarray(inputs[0][:REPORT_EXAMPLES])), ""


def _material(run: TrainedVAE, inputs: tuple[np.ndarray, np.ndarray | None] | None) -> _Material:
    if inputs is None:
        try:
            inputs = run.load_inputs()
        except UserError as error:  # the data moved: the report still shows what needs no inputs
            logger.warning("the report leaves out what needs the run's data: %s", error)
            return _Material(run, None, None, None, str(error))
    x = np.asarray(inputs[0][:REPORT_EXAMPLES])  # decodes them, if the folder streams
    if len(x) == 0:
        return _Material(run, None, None, None, "the run's test split is empty (see the data's split settings)")
    y = None if inputs[1] is None else np.asarray(inputs[1][:REPORT_EXAMPLES])
    return _Material(run, x, y, run.kl_per_dimension(x, y), "")


def _left_out(key: str, title: str, material: _Material) -> Section:
    """A section that needs test inputs, when the run's data could not be read."""
    return Section(key, title, f"<p>Left out: {html.escape(material.missing)}</p>")


def _settings(run: TrainedVAE) -> Section:
    ours, defaults = run.config.to_dict(), RunConfig().to_dict()
    rows, changed = [], []
    for group, settings in ours.items():
        for name, value in settings.items():
            default = defaults.get(group, {}).get(name)
            rows.append([f"{group}.{name}", _text(value), _text(default)])
            if value != default:
                changed.append(rows[-1])
    body = ("<p>The settings this run was trained with; the table lists those that differ from vaekit's "
            "defaults.</p>" + table(["setting", "value", "default"], changed or [["(none)", "", ""]])
            + f"<details><summary>All {len(rows)} settings</summary>{table(['setting', 'value', 'default'], rows)}"
            "</details>")
    return Section("settings", "Settings", body)


def _text(value: Any) -> str:  # a setting's value: lists as "400, 200"
    return ", ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


def _data(run: TrainedVAE) -> Section:
    data = run.data
    rows = [["description", data.description], ["kind", data.kind],
            ["shape of an example", " × ".join(map(str, data.event_shape))], ["likelihood p(x|z)", data.likelihood],
            ["stored as", data.codec.get("type", "?")],
            *[[f"{split} examples", f"{count:,}"] for split, count in data.counts.items()]]
    if data.class_names:
        rows.append([f"{len(data.class_names)} classes", ", ".join(data.class_names)])
    if data.columns:
        rows.append([f"{len(data.columns)} columns", ", ".join(data.columns)])
    return Section("data", "Data", "<p>What the model was trained on.</p>" + table(["", ""], rows))


def _best_epoch(run: TrainedVAE) -> int | None:
    results, metrics = run.results, run.metrics
    if results:
        return results.get("best_epoch")
    scored = [m for m in metrics if "val_elbo" in m]
    return max(scored, key=lambda m: m["val_elbo"])["epoch"] if scored else None


def _loss(run: TrainedVAE) -> Section:
    metrics = run.metrics
    if not metrics:
        return Section("loss", "Loss curves", "<p>No epoch has finished yet.</p>")
    best = _best_epoch(run)
    caption = ("Per epoch, in nats per example (lower is better): the negative ELBO and its two terms, the "
               "reconstruction −E[log p(x|z)] and KL(q(z|x) ‖ p(z)), on the training split (solid) and the "
               "validation split (dashed)." + (f" The dotted line marks epoch {best}, whose weights the run "
                                               "keeps." if best else ""))
    return Section("loss", "Loss curves", figure(loss_png(metrics, best), caption, "loss curves"))


def _test_figures(run: TrainedVAE) -> Section:
    results = run.results
    if not results:
        return Section("test", "Test figures", "<p>Not yet: training has not finished.</p>")
    rows = [["−ELBO", f"{-results['test_elbo']:.2f} nats"],
            ["reconstruction −E[log p(x|z)]", f"{-results['test_reconstruction']:.2f} nats"],
            ["KL(q(z|x) ‖ p(z))", f"{results['test_kl']:.2f} nats"],
            *([["−IWAE bound", f"{-results['test_iwae']:.2f} nats"]] if "test_iwae" in results else []),
            ["test examples", f"{results['test_examples']:,}"],
            ["best epoch (weights kept)", f"{results['best_epoch']} of {results['epochs_trained']}"],
            ["training time", f"{results['train_seconds']:.1f} s"]]
    body = ("<p>The run's best weights on its test split, nats per example.</p>" + table(["", ""], rows)
            + _evaluations(run))
    return Section("test", "Test figures", body)


def _evaluations(run: TrainedVAE) -> str:
    saved = read_evaluations(run.run_dir)
    if not saved:
        return ("<p>No importance-sampled evaluation saved yet: <code>vaekit evaluate RUN</code> adds the "
                "NLL (K = 5000 samples, as papers report it) here.</p>")
    current = weights_digest(run.run_dir)
    if run.text is not None:  # per sentence, per token and the perplexity, as language-model papers give them
        rows = [[key, f"{f['nll']:.2f}", f"{f.get('nll_per_token', float('nan')):.4f}",
                 f"{f.get('perplexity', float('nan')):.2f}", f"{f['kl']:.2f}",
                 f"{f['active_units']} of {f['latent_dim']}",
                 f"{f['importance_samples']:,}", f"{f['examples']:,}",
                 "" if f.get("weights") in (None, current) else "weights since changed"] for key, f in saved.items()]
        return ("<p>Saved by <code>vaekit evaluate</code>: the NLL −log p(x) per sentence estimated with K importance "
                "samples, per token (each sentence's &lt;/s&gt; counted), the perplexity exp(NLL per token), the KL "
                "term and the active units.</p>"
                + table(["evaluation", "NLL", "NLL/token", "perplexity", "KL", "active units", "K", "examples",
                         "note"], rows))
    rows = [[key, f"{f['nll']:.2f}", f"{f['bits_per_dim']:.4f}", f"{-f['elbo']:.2f}",
             f"{f['active_units']} of {f['latent_dim']}", f"{f['importance_samples']:,}", f"{f['examples']:,}",
             "" if f.get("weights") in (None, current) else "weights since changed"] for key, f in saved.items()]
    return ("<p>Saved by <code>vaekit evaluate</code>: the NLL −log p(x) estimated with K importance samples "
            "(nats per example), bits per dimension, and the latent units whose posterior mean varies over the "
            "data by more than 0.01.</p>"
            + table(["evaluation", "NLL", "bits/dim", "−ELBO", "active units", "K", "examples", "note"], rows))


def _samples(material: _Material) -> Section:
    run = material.run
    seed = run.config.train.seed
    if drawable(run.data) and run.conditional:  # a row per class, as `sample --per-label` draws them
        per_class = max(1, SAMPLES // run.model.classes)
        labels = np.repeat(np.arange(run.model.classes), per_class)
        rows = run.sample(len(labels), seed=seed, labels=labels).reshape(run.model.classes, per_class,
                                                                         *run.data.event_shape)
        png = latent.labelled_grid(rows, run.data, list(run.data.class_names or ()), [""] * per_class,
                                   "decoded means E[x|z, y] for z ~ p(z), a row per class y")
        body = figure(png, f"{per_class} samples of each class: E[x|z, y] for z ~ N(0, I), decoded with the "
                      "row's label (vaekit sample --per-label).", "samples by class")
    elif drawable(run.data):
        means, draws = run.sample(SAMPLES, seed=seed), run.sample(SAMPLES, seed=seed, stochastic=True)
        body = (figure(_grid(means, run), f"{SAMPLES} decoded means E[x|z] for z ~ p(z) = N(0, I).", "samples")
                + (audio_players(means[:CLIPS], run.data, f"The first {CLIPS} of them as sound (Griffin-Lim).")
                   if run.data.kind == AUDIO else "")
                + figure(_grid(draws, run), "Draws x ~ p(x|z) for the same z: what the model itself generates "
                         f"({'binary pixels' if run.data.likelihood == 'bernoulli' else 'with pixel noise'}).",
                         "stochastic samples"))
    elif run.data.kind == TABLE:
        if material.x is None:
            return _left_out("samples", "Samples", material)
        draws = run.sample(TABLE_SAMPLES, seed=seed, stochastic=True)
        body = figure(histograms_png(material.x, draws, run), "Per column: a histogram of the test rows against "
                      f"{TABLE_SAMPLES} rows drawn x ~ p(x|z), z ~ p(z), in the table's own units.", "histograms")
    else:
        means = run.sample(CURVES, seed=seed)
        caption = f"{CURVES} decoded means E[x|z] for z ~ p(z), each a line over the array's positions."
        body = figure(curves_png([("sample", means)], "samples E[x|z]"), caption, "sample curves")
    return Section("samples", "Samples", body)


def _grid(examples: np.ndarray, run: TrainedVAE) -> bytes:  # (N, *event_shape) in data units
    return png_bytes(image_grid(as_pixels(examples, run.data), columns=8))


def _reconstructions(material: _Material) -> Section:
    if material.x is None:
        return _left_out("reconstructions", "Reconstructions", material)
    run, x = material.run, material.x
    if drawable(run.data):
        columns = min(RECONSTRUCTION_COLUMNS, len(x))  # whole rows only, from however few test inputs
        inputs = x[: min(RECONSTRUCTION_PAIRS, len(x) // columns) * columns]
        rows = inputs.reshape(-1, columns, *inputs.shape[1:])  # (pairs, columns, ...)
        labels = None if material.y is None else material.y[: len(inputs)]
        outputs = run.reconstruct(inputs, labels).reshape(rows.shape)
        paired = np.stack([rows, outputs], axis=1).reshape(-1, *rows.shape[1:])  # input row, then its output
        labels = ["input", "reconstruction"] * len(rows)
        png = latent.labelled_grid(paired, run.data, labels, [""] * columns,
                                   "test inputs and their reconstructions E[x|z = μ(x)]")
        body = figure(png, "Test inputs, each row followed by its reconstruction: the decoded posterior mean "
                      "E[x|z = μ(x)].", "reconstructions")
        if run.data.kind == AUDIO:
            body += audio_players(inputs[:CLIPS], run.data, f"{CLIPS} test inputs, as their spectrograms sound "
                                  "(Griffin-Lim, so phase is re-estimated), ...")
            body += audio_players(outputs.reshape(inputs.shape)[:CLIPS], run.data, "... and their reconstructions.")
        return Section("reconstructions", "Reconstructions", body)
    outputs = run.reconstruct(x, material.y)
    errors = outputs.astype(np.float64) - x
    if run.data.kind == TABLE:
        return Section("reconstructions", "Reconstructions", _column_errors(errors, x, run))
    body = figure(curves_png([("input", x[:CURVES]), ("reconstruction", outputs[:CURVES])],
                          "test inputs (solid) and reconstructions (dashed)"),
                  f"{CURVES} test inputs (solid) and their reconstructions E[x|z = μ(x)] (dashed); root mean "
                  f"square error over {len(x):,} test examples: {np.sqrt(np.mean(errors ** 2)):.4g}.",
                  "reconstruction curves")
    return Section("reconstructions", "Reconstructions", body)


def _column_errors(errors: np.ndarray, x: np.ndarray, run: TrainedVAE) -> str:
    names = run.data.columns or tuple(f"x{i}" for i in range(x.shape[1]))
    rmse, spread = np.sqrt(np.mean(errors ** 2, axis=0)), np.std(x.astype(np.float64), axis=0)
    rows = [[name, f"{r:.4g}", f"{s:.4g}", f"{r / s:.2f}" if s > 0 else "–"]
            for name, r, s in zip(names, rmse, spread, strict=True)]
    return (f"<p>Per column, the root mean square error of the reconstructions E[x|z = μ(x)] of {len(x):,} "
            "test rows, in the column's own units, beside the column's standard deviation (a ratio near 0 "
            "is a close reconstruction, near 1 no better than the column's mean).</p>"
            + table(["column", "RMSE", "standard deviation", "RMSE / std"], rows))


def _interpolations(material: _Material) -> Section:
    if material.x is None:
        return _left_out("interpolations", "Interpolations", material)
    if len(material.x) < 2:
        return Section("interpolations", "Interpolations", "<p>An interpolation needs two test inputs.</p>")
    run, x = material.run, material.x
    pairs = min(INTERPOLATION_PAIRS, len(x) // 2)
    starts, ends = x[:pairs], x[pairs : 2 * pairs]
    y = material.y
    paths = run.interpolate(starts, ends, steps=INTERPOLATION_STEPS, path="linear",  # a conditional run: the start's
                            labels_from=None if y is None else y[:pairs],  # label decodes its path
                            labels_to=None if y is None else y[pairs : 2 * pairs])
    labels = [f"test {i} → {pairs + i}" for i in range(pairs)]
    png = latent.interpolation_png(starts, paths, ends, run.data, labels, "linear")
    caption = (f"{pairs} pairs of test inputs: each row decodes E[x|z] at {INTERPOLATION_STEPS} equal steps on "
               "the straight line between the two inputs' posterior means μ(x).")
    return Section("interpolations", "Interpolations", figure(png, caption, "interpolations"))


def _traversals(material: _Material) -> Section:
    run = material.run
    dims = material.by_kl()[:TRAVERSED_DIMENSIONS]
    kl = material.kl if material.kl is not None else np.full(run.model.latent_dim, np.nan)
    rows = run.traverse(dims=dims, steps=TRAVERSAL_STEPS, span=TRAVERSAL_SPAN)
    png = latent.traversal_png(rows, run.data, dims, kl, latent_paths.ACTIVE_KL, TRAVERSAL_SPAN, "the prior mean 0")
    chosen = "each latent dimension" if len(dims) == run.model.latent_dim else f"the {len(dims)} of most KL"
    caption = (f"From the prior mean z = 0, {chosen} swept from −{TRAVERSAL_SPAN:g} to +{TRAVERSAL_SPAN:g} "
               "with the others held at 0, one row per dimension, most KL first; a dimension with under "
               f"{latent_paths.ACTIVE_KL:g} nats of KL is marked inactive: the decoder ignores it.")
    return Section("traversals", "Traversals", figure(png, caption, "latent traversals"))


def _kl_section(material: _Material) -> Section:
    if material.kl is None:
        return _left_out("kl", "KL per dimension", material)
    active = int((material.kl > latent_paths.ACTIVE_KL).sum())
    caption = (f"KL(q(zⱼ|x) ‖ p(zⱼ)) of each latent dimension j, averaged over {len(material.x):,} test "
               f"inputs: {active} of {len(material.kl)} are active units (above {latent_paths.ACTIVE_KL:g} nats); the "
               "rest have collapsed to the prior.")
    return Section("kl", "KL per dimension", figure(latent.kl_png(material.kl, latent_paths.ACTIVE_KL), caption, "KL"))


def _latent_scatter(material: _Material) -> Section:
    if material.x is None:
        return _left_out("latent", "Latent space", material)
    if len(material.x) < 3:
        return Section("latent", "Latent space", "<p>Too few test inputs to draw their codes.</p>")
    run = material.run
    codes, _ = run.encode(material.x, material.y)  # (N, D)
    codes2d, axes = latent_paths.project(codes)
    how = {1: "on a line", 2: "as it is (two latent dimensions)"}.get(
        codes.shape[1], f"projected on its first two principal components ({codes.shape[1]} dimensions)")
    labels = None if material.y is None else material.y.astype(np.int64)
    png = latent.latent_scatter_png(codes2d, labels, run.data.class_names, axes,
                                    f"posterior means μ(x) of {len(codes):,} test inputs")
    caption = (f"The posterior mean μ(x) of each of {len(codes):,} test inputs, {how}"
               + ("; coloured by label." if labels is not None else "."))
    return Section("latent", "Latent space", figure(png, caption, "latent scatter"))


def _manifold(material: _Material) -> Section:
    run = material.run
    if run.model.latent_dim < 2:
        return Section("manifold", "Manifold", "<p>A manifold needs two latent dimensions; this run has one.</p>")
    first, second = material.by_kl()[:2]
    images = run.manifold(grid=MANIFOLD_GRID, dims=(first, second))
    caption = (f"E[x|z] over a {MANIFOLD_GRID} × {MANIFOLD_GRID} grid of the two dimensions of most KL, z{first} "
               f"(down) and z{second} (across), at equal steps of the prior's quantiles, the other dimensions at 0 "
               "(as in Kingma & Welling's Figure 4).")
    return Section("manifold", "Manifold", figure(latent.manifold_png(images, run.data, (first, second)), caption,
                                                 "manifold"))
