"""``ftkit serve``: an HTTP inference server for a run folder or an export (FastAPI + uvicorn).

- :mod:`ftkit.serving.app`: the FastAPI app (``/predict``, ``/health``, ``/info``, ``/docs``, ``/`` the try-it page),
  its limits, API key and JSON errors.
- :mod:`ftkit.serving.batcher`: dynamic batching -- concurrent requests gathered into one
  :meth:`ftkit.engine.inference.Predictor.predict` call on a single worker thread.
- :mod:`ftkit.serving.schemas`: the request models (per task, the same shapes ``ftkit predict`` reads).
- :mod:`ftkit.serving.server`: :func:`run_server`, the uvicorn server ``ftkit serve`` runs.

The model is loaded once through ``Predictor.load`` and every answer comes from ``Predictor.predict``,
the code path ``ftkit predict`` prints from: a served answer equals the offline one by construction.
"""

from __future__ import annotations

from ftkit.serving.server import ServeOptions, run_server

__all__ = ["ServeOptions", "run_server"]
