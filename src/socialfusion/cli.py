"""`socialfusion VERB ...`: each verb lives in its own module with `main(argv)`; heavy imports happen there.

This dispatcher is the one place that turns a user error (`socialfusion.errors.UserError`: a wrong path, a missing
dataset, an unknown key or task...) into `error: ...` (+ `hint: ...`) and exit status 2. Anything else is a bug
and keeps its traceback. `--debug` and `--verbose` work anywhere on the line, for every verb.

Exit status, the same rule for every verb (docs/USAGE.md, "Exit status"): 0 the verb did its work; 1 it ran to the
end but produced nothing (every input skipped) or a check it runs failed (`data validate` over its bad fraction);
2 a user error (this module's one line, or argparse's usage message); 3 a bug: the traceback, then a line saying
so (only from the console script; an in-process caller of `main(argv)` gets the exception itself).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import traceback

from . import __version__
from .errors import DEBUG_ENV, VERBOSE_ENV, UserError, debug_requested, format_user_error

VERBS = {
    "demo": ("socialfusion.demo", "run the main job: synthetic benchmark, train, evaluate, analyse, report"),
    "study": (
        "socialfusion.study",
        "the paper's study for any config: transfer (+ baselines, seeds), gradient conflict, probes, report",
    ),
    "data": ("socialfusion.data.commands", "prepare | validate | stats | synth datasets"),
    "train": ("socialfusion.commands", "train a single-task or joint multi-task model"),
    "eval": ("socialfusion.commands", "evaluate a checkpoint with the official metrics"),
    "plan": ("socialfusion.commands", "parameters, visual tokens, memory and FLOPs of a config (meta device)"),
    "cache-features": ("socialfusion.commands", "compute the frozen encoder's features once"),
    "merge-lora": ("socialfusion.commands", "write a standalone Hugging Face LLM with the LoRA adapter merged"),
    "predict": ("socialfusion.serve.predict_cli", "run a checkpoint on your images (and boxes) or clips"),
    "serve": ("socialfusion.serve.http", "HTTP service and web page"),
    "probe": ("socialfusion.analysis.probe", "linear probing of encoder features (decodability)"),
    "gradconf": ("socialfusion.analysis.gradconf", "gradient conflict between tasks (compatibility)"),
    "transfer": ("socialfusion.analysis.transfer", "single-task vs joint training: the transfer table"),
}
CONSOLE_FLAGS = {"--debug": DEBUG_ENV, "--verbose": VERBOSE_ENV}


def usage() -> str:
    lines = ["usage: socialfusion [--version] VERB [options] [key.sub=value ...]", "", "verbs:"]
    lines += [f"  {verb:<15} {help_}" for verb, (_, help_) in VERBS.items()]
    lines += [
        "",
        "options of every verb (anywhere on the line):",
        "  --verbose       show third-party load reports, progress bars and warnings",
        "  --debug         show the traceback of an error (or set SOCIALFUSION_DEBUG=1)",
        "",
        "`socialfusion VERB --help` lists a verb's options.",
    ]
    return "\n".join(lines)


def verb_entry(verb: str):
    """The `main(argv)` of a verb. Its module is imported only here, when that verb runs, so that `--help` and the
    light verbs never import torch."""
    module = importlib.import_module(VERBS[verb][0])
    return getattr(module, "main_" + verb.replace("-", "_"), None) or module.main


@contextlib.contextmanager
def _console_env(flags: set[str]):
    """Set the environment variables of the console flags given on the line for the duration of the verb (child
    processes such as DataLoader workers inherit them); restore them afterwards (in-process callers, tests)."""
    saved = {var: os.environ.get(var) for var in CONSOLE_FLAGS.values()}
    for flag in flags:
        os.environ[CONSOLE_FLAGS[flag]] = "1"
    try:
        yield
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


BUG_STATUS = 3


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # the console script: a bug is exit status 3 (1 already means "nothing came out")
        try:
            return _main(sys.argv[1:])
        except Exception:
            traceback.print_exc()
            print(
                "socialfusion: internal error (a bug, not a problem with your input): "
                "please report it with the traceback above",
                file=sys.stderr,
            )
            return BUG_STATUS
    return _main(list(argv))


def _main(argv: list[str]) -> int:
    flags = {a for a in argv if a in CONSOLE_FLAGS}
    argv = [a for a in argv if a not in CONSOLE_FLAGS]
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] in ("-V", "--version"):
        # local: numerics imports torch, which `--help` and the light verbs must not pay for
        from .numerics import format_precision_facts, precision_facts

        print(
            "\n".join([f"socialfusion {__version__}", *format_precision_facts(precision_facts())])
        )  # the CPU is part of every figure
        return 0
    verb, rest = argv[0], argv[1:]
    with _console_env(flags):
        try:
            if verb not in VERBS:
                raise UserError(f"unknown verb {verb!r}", hint=f"one of: {', '.join(VERBS)} (socialfusion --help)")
            return int(verb_entry(verb)(rest) or 0)
        except UserError as err:
            if debug_requested():
                traceback.print_exc()
            print(format_user_error(err), file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
