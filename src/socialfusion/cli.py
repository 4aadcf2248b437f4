"""`socialfusion VERB ...`: each verb lives in its own module with `main(argv)`; heavy imports happen there."""

from __future__ import annotations

import importlib
import sys

VERBS = {
    "demo": ("socialfusion.demo", "run the main job: synthetic benchmark, train, evaluate, analyse, report"),
    "data": ("socialfusion.data.commands", "prepare | validate | stats | synth datasets"),
    "train": ("socialfusion.commands", "train a single-task or joint multi-task model"),
    "eval": ("socialfusion.commands", "evaluate a checkpoint with the official metrics"),
    "plan": ("socialfusion.commands", "parameters, visual tokens, memory and FLOPs of a config (meta device)"),
    "cache-features": ("socialfusion.commands", "compute the frozen encoder's features once"),
    "merge-lora": ("socialfusion.commands", "write a standalone Hugging Face LLM with the LoRA adapter merged"),
    "predict": ("socialfusion.serve.predict_cli", "run a checkpoint on your images and boxes"),
    "serve": ("socialfusion.serve.http", "HTTP service and web page"),
    "probe": ("socialfusion.analysis.probe", "linear probing of encoder features (decodability)"),
    "gradconf": ("socialfusion.analysis.gradconf", "gradient conflict between tasks (compatibility)"),
    "transfer": ("socialfusion.analysis.transfer", "single-task vs joint training: the transfer table"),
}


def usage() -> str:
    lines = ["usage: socialfusion VERB [options]", "", "verbs:"]
    lines += [f"  {verb:<15} {help_}" for verb, (_, help_) in VERBS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS:
        print(f"unknown verb {verb!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(VERBS[verb][0])
    entry = getattr(module, "main_" + verb.replace("-", "_"), None) or module.main
    return int(entry(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
