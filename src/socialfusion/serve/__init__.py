"""Inference front ends: `predict_cli` (the `socialfusion predict` verb; clips in `predict_clips`, its output
files in `outputs`, its overlays in `overlay`), `http` (the `socialfusion serve` verb: a FastAPI service and the
web page in `static/index.html`). The Python API is `socialfusion.api.SocialFusion`."""
