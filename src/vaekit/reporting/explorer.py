"""The latent-space explorer: a local web page that decodes latent codes live from a trained run.

`Explorer` holds a `TrainedVAE` and a strip of the run's test examples and answers the page's questions
in bytes (PNG for drawable data, JSON values for tables and arrays); `explorer_requests` checks every
request body; `explorer_server.ExplorerHandler` turns HTTP requests into those calls, and
`explorer_server.make_server` listens on 127.0.0.1 only.

    GET  /                          the page (explorer.html, plain HTML and JS, no external request)
    GET  /api/info                  kind, the shown dimensions and their KL, the strip's size and labels
    GET  /api/example/<i>.png       a thumbnail of strip example i (drawable data only)
    GET  /api/example/<i>.json      strip example i's values in data units
    POST /api/decode                {"z": [D numbers][, "label": y]} -> E[x|z] (E[x|z, y]) as PNG or {"values": [...]}
    POST /api/encode                {"index": i} -> {"loc": μ(x_i), "scale": σ(x_i)[, "label": y_i]}
    POST /api/interpolate           {"from": i, "to": j, "steps": n[, "path": "linear"|"slerp"]} -> PNG strip or values

A bad request gets a 4xx with a one-line plain-text reason; a failure of ours a 500 with one line and
the traceback in the log. Neither ends the server.
"""

from __future__ import annotations

import logging
import threading
from http import HTTPStatus
from typing import Any

import numpy as np

from vaekit.errors import UserError
from vaekit.model import latent_paths
from vaekit.model.latent_paths import PATHS
from vaekit.reporting.explorer_requests import MAX_ABS_Z, MAX_STEPS, MIN_STEPS, PNG, Reply, RequestError, json_reply
from vaekit.reporting.outputs import as_pixels, drawable
from vaekit.reporting.pictures import image_grid, png_bytes
from vaekit.runs.trained import TrainedVAE

logger = logging.getLogger(__name__)
STRIP_SIZE = 16  # test examples on the page: enough to find two classes to interpolate, few enough to load fast
FALLBACK_DIMS = 2  # when none is active (a collapsed posterior), still show the two of most KL
KL_CHUNK = 1024  # test examples encoded at once when measuring KL: bounded memory on a big test split
SLIDER_SPAN = 3.0  # the sliders cover ±3 prior standard deviations, where p(z) has 99.7% of its mass


def _plain_floats(values: np.ndarray) -> list[Any]:
    """float32 values as the shortest decimals that read back to them (0.3, not 0.30000001192092896)."""
    return np.vectorize(lambda v: float(str(np.float32(v))), otypes=[object])(values).tolist()


def _kl_over(trained: TrainedVAE, x: np.ndarray, y: np.ndarray | None) -> np.ndarray:
    """KL(q(zⱼ|x) ‖ p(zⱼ)) averaged over all of x (with its labels y, for a conditional run), in chunks: (D,) nats."""
    total = np.zeros(trained.model.latent_dim)
    for start in range(0, len(x), KL_CHUNK):
        chunk = x[start : start + KL_CHUNK]
        total += trained.kl_per_dimension(chunk, None if y is None else y[start : start + KL_CHUNK]) * len(chunk)
    return total / len(x)


def shown_dimensions(kl: np.ndarray) -> list[int]:
    """The dimensions that get a slider: the active ones (KL > 0.01 nats), most KL first, else the top two."""
    return latent_paths.active_dimensions(kl) or latent_paths.by_kl(kl)[:FALLBACK_DIMS]


class Explorer:
    """A trained run and a strip of its test examples, answering the page: decode, encode, interpolate.

    The model is used under a lock: the server answers requests in threads, and one model call at a time
    keeps them from fighting over the CPU's threads.
    """

    def __init__(self, trained: TrainedVAE, strip_size: int = STRIP_SIZE):
        self.trained = trained
        self.data = trained.data
        self.drawable = drawable(trained.data)
        x, y = trained.load_inputs()
        if len(x) == 0:
            raise UserError(f"{trained.run_dir}: its test split is empty, so there is nothing to explore")
        picks = np.unique(np.linspace(0, len(x) - 1, min(strip_size, len(x))).round().astype(int))
        self.strip = x[picks]  # (S, *event_shape), spread over the split rather than its first few
        self.strip_y = None if y is None else np.asarray(y)[picks]
        self.labels = [self._label_name(y[i]) for i in picks] if y is not None else [None] * len(picks)
        self.classes = trained.model.classes  # > 0: a conditional run, which decodes with a class the page picks
        self.kl = _kl_over(trained, x, y)
        self.dims = shown_dimensions(self.kl)
        self._lock = threading.Lock()

    def _label_name(self, label: Any) -> str:
        names = self.data.class_names
        if names and isinstance(label, (int, np.integer)) and 0 <= label < len(names):
            return names[int(label)]
        return str(label)

    @property
    def latent_dim(self) -> int:
        return self.trained.model.latent_dim

    def info(self) -> dict[str, Any]:
        return {
            "run": self.trained.run_dir.name, "description": self.data.description, "kind": self.data.kind,
            "drawable": self.drawable, "event_shape": list(self.data.event_shape), "latent_dim": self.latent_dim,
            "dims": [{"index": d, "kl": float(self.kl[d])} for d in self.dims], "kl": self.kl.tolist(),
            "active_kl_nats": latent_paths.ACTIVE_KL, "examples": len(self.strip), "labels": self.labels,
            "columns": list(self.data.columns) if self.data.columns else None,
            "slider_span": SLIDER_SPAN, "max_abs_z": MAX_ABS_Z, "steps": [MIN_STEPS, MAX_STEPS], "paths": list(PATHS),
            "classes": list(self.data.class_names or ()) if self.classes else None,
        }

    def check_index(self, index: int, status: HTTPStatus = HTTPStatus.BAD_REQUEST) -> int:
        if not 0 <= index < len(self.strip):
            raise RequestError(status, f"example {index}: the strip holds examples 0 to {len(self.strip) - 1}")
        return index

    def render(self, examples: np.ndarray, columns: int | None = None) -> Reply:
        """Examples (N, *event_shape) in data units as one PNG grid, or their values for undrawable data."""
        if self.drawable:
            return Reply(png_bytes(image_grid(as_pixels(examples, self.data), columns)), PNG)
        values = _plain_floats(examples.reshape(len(examples), -1))
        columns = list(self.data.columns) if self.data.columns else None
        return json_reply({"values": values, "shape": list(self.data.event_shape), "columns": columns})

    def example(self, index: int, as_png: bool) -> Reply:
        self.check_index(index, HTTPStatus.NOT_FOUND)
        if not as_png:
            return json_reply({"values": _plain_floats(self.strip[index].reshape(-1)), "label": self.labels[index]})
        if not self.drawable:
            raise RequestError(HTTPStatus.NOT_FOUND, f"this run's {self.data.kind} data of shape "
                               f"{self.data.event_shape} cannot be drawn; GET /api/example/{index}.json")
        return self.render(self.strip[index : index + 1])

    def decode(self, z: np.ndarray, label: int | None = None) -> Reply:
        """E[x|z] of one code z (1, D); a conditional run's E[x|z, y] of the class `label`."""
        with self._lock:
            return self.render(self.trained.decode(z, None if label is None else np.array([label])))

    def encode(self, index: int) -> dict[str, Any]:
        """μ and σ of q(z|x) for strip example `index`, each D numbers; a conditional run's q(z|x, y) with the
        example's own label, which it gives too."""
        self.check_index(index)
        own = None if self.strip_y is None else self.strip_y[index : index + 1]
        with self._lock:
            loc, scale = self.trained.encode(self.strip[index : index + 1], own)
        label = {"label": int(own[0])} if self.classes and own is not None else {}
        return {"loc": loc[0].tolist(), "scale": scale[0].tolist(), **label}

    def interpolate(self, start: int, end: int, steps: int, path: str) -> Reply:
        """The decoded path between two strip examples' posterior means, both ends included."""
        self.check_index(start)
        self.check_index(end)
        with self._lock:
            y = self.strip_y
            labels = (None, None) if y is None else (y[start : start + 1], y[end : end + 1])
            decoded = self.trained.interpolate(self.strip[start : start + 1], self.strip[end : end + 1], steps, path,
                                               *labels)
        return self.render(decoded[0], columns=steps)


# --- validating request bodies ------------------------------------------------------------------------
