"""The reading paths of docs/ARCHITECTURE.md, counted from the code: every function a reader follows from a
classification task's training batch to its loss (and what a gaze batch adds), and from a user's image and boxes
to a classification answer (and what the gaze answer adds). The counts equal the numbers the document gives, so
neither the code nor the document drifts (rename or grow a function on a path and this test says which number to
update), and the training step stays within its budget of 250 lines."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "socialfusion"

# module path (under src/socialfusion) -> functions on the path, "Class.method" or "function"
TRAINING_STEP = {
    "train/step.py": ["train_step", "task_backward"],
    "train/distributed.py": ["common_micro_batches", "sync_gradients"],
    "runtime.py": ["autocast"],
    "models/socialfusion.py": [
        "SocialFusionModel.forward",
        "SocialFusionModel.features",
        "SocialFusionModel.encode",
        "SocialFusionModel.visual_tokens",
        "SocialFusionModel._region_roles",
        "SocialFusionModel._prefix",
        "SocialFusionModel.prompt",
        "SocialFusionModel._split_visual",
        "SocialFusionModel._embed",
        "SocialFusionModel._answer_readout",
        "SocialFusionModel.answer_table",
    ],
    "models/encoder.py": ["VisionEncoder.forward"],
    "models/connector.py": ["Connector.forward", "Connector._as_grid", "Standardize.forward"],
    "models/box_mask.py": ["BoxEmbedding.forward", "BoxEmbedding.role_masks", "box_cell_mask"],
    "models/llm.py": ["decoder_and_head"],
    "tasks/base.py": ["ClassificationTask.loss"],
}
# a gaze batch reads its readout instead of the answer's
GAZE_TRAINING = {
    "models/socialfusion.py": ["SocialFusionModel._heatmap_readout", "SocialFusionModel._patches"],
    "models/heads.py": ["GazeHead.forward"],
    "tasks/gaze.py": ["Gaze.loss", "gaze_loss"],
}

PREDICTION = {
    "api.py": [
        "SocialFusion.predict",
        "SocialFusion.resolve_tasks",
        "SocialFusion.check_untagged_boxes",
        "SocialFusion._warning",
        "SocialFusion._predict_batch",
        "to_pil",
    ],
    "boxes.py": [
        "parse_boxes",
        "parse_box",
        "_number",
        "check_untagged_boxes",
        "image_boxes",
        "task_groups",
        "task_boxes",
        "roles_needed",
        "_by_kind",
        "_by_role",
    ],
    "runtime.py": ["autocast"],
    "data/pipeline.py": ["collate"],
    "models/encoder.py": ["VisionEncoder.preprocess", "VisionEncoder.forward"],
    "models/base.py": ["TaskModel.predict", "TaskModel.answers"],
    "models/socialfusion.py": [
        "SocialFusionModel.prepare_inputs",
        "SocialFusionModel.infer_tasks",
        "SocialFusionModel._infer_shared_prefix",
        "SocialFusionModel._decode",
        "SocialFusionModel.features",
        "SocialFusionModel.encode",
        "SocialFusionModel.visual_tokens",
        "SocialFusionModel._region_roles",
        "SocialFusionModel.prompt",
        "SocialFusionModel._split_visual",
        "SocialFusionModel._embed",
    ],
    "models/connector.py": ["Connector.forward", "Connector._as_grid", "Standardize.forward"],
    "models/box_mask.py": ["BoxEmbedding.forward", "BoxEmbedding.role_masks", "box_cell_mask"],
    "models/packing.py": ["ancestry", "_ancestry", "is_chain", "attention_mask"],
    "models/scoring.py": ["plan_scoring", "_plan", "class_scores"],
    "tasks/base.py": ["ClassificationTask.decode", "ClassificationTask.present"],
}
GAZE_PREDICTION = {
    "models/socialfusion.py": ["SocialFusionModel._patches"],
    "models/heads.py": ["GazeHead.forward", "heatmap_prediction"],
    "tasks/gaze.py": ["Gaze.decode", "Gaze.present"],
}

TRAINING_BUDGET = 250  # issue 27; the prediction's budget (350) is not met, docs/ARCHITECTURE.md says by how much


def _function_lengths(module: str) -> dict[str, int]:
    tree = ast.parse((SRC / module).read_text())
    out = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out[node.name] = node.end_lineno - node.lineno + 1
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    out[f"{node.name}.{item.name}"] = item.end_lineno - item.lineno + 1
    return out


def path_length(path: dict[str, list[str]]) -> tuple[int, int]:
    """(lines, files) of the functions on `path` (decorators excluded, docstrings included)."""
    total = 0
    for module, names in path.items():
        lengths = _function_lengths(module)
        missing = [n for n in names if n not in lengths]
        assert not missing, f"{module} has no {missing}: update the reading path here and in docs/ARCHITECTURE.md"
        total += sum(lengths[n] for n in names)
    return total, len(path)


def _stated(text: str, name: str) -> tuple[int, int]:
    found = re.search(rf"{name}[^*]*\*\*(\d+) lines in (\d+) files\*\*", text)
    assert found, f"docs/ARCHITECTURE.md must say '{name} ... **N lines in M files**'"
    return int(found.group(1)), int(found.group(2))


def test_the_document_gives_the_reading_paths_true_length():
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    for name, path in (
        ("Reading one training step", TRAINING_STEP),
        ("A gaze batch's step adds", GAZE_TRAINING),
        ("Reading one prediction", PREDICTION),
        ("A gaze answer adds", GAZE_PREDICTION),
    ):
        assert _stated(text, name) == path_length(path), f"{name}: the code reads {path_length(path)} (lines, files)"


def test_the_training_step_fits_its_budget():
    lines, _ = path_length(TRAINING_STEP)
    assert lines <= TRAINING_BUDGET, f"one training step reads {lines} lines, over its budget of {TRAINING_BUDGET}"
