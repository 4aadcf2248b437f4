"""Inference front ends: `predict_cli` (the `socialfusion predict` verb), `http` (the `socialfusion serve` verb:
a FastAPI service and the web page in `static/index.html`). The Python API is `socialfusion.api.SocialFusion`."""
