"""Results report: run the approximability study and write docs/results.md with its figures.

    python scripts/report.py            # the full study (about an hour on a 2-core CPU)
    python scripts/report.py --quick    # the same pipeline on tiny runs, a few minutes

Runs go under --runs-dir (default outputs/report/<mode>); a rerun keeps finished runs and does only
what is missing. The study is rnn_ff/report (plan, runner, results, analysis, figures, markdown).

Command line: --flags (argparse), not the key=value overrides of train.py and of the tools that act
on a run (evaluate, export, summarize: rnn_ff/cli.py): a developer's tool with modes that composes
no config of its own.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from rnn_ff.config import PROJECT_ROOT
from rnn_ff.report import generate
from rnn_ff.report.plan import FULL, QUICK, STUDY_TASKS


def main(argv: list[str]) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny runs: checks the pipeline in a few minutes")
    parser.add_argument("--runs-dir", type=Path, help="where the runs go (default outputs/report/<mode>)")
    parser.add_argument("--docs-dir", type=Path, default=PROJECT_ROOT / "docs", help="where results.md goes")
    parser.add_argument("--readme", type=Path, default=None,
                        help="rewrite this README's results section (default: README.md in full mode, none in quick)")
    parser.add_argument("--tasks", default=",".join(STUDY_TASKS), help="comma-separated task names")
    parser.add_argument("--jobs", type=int, default=2, help="training runs at a time (one thread each)")
    parser.add_argument("--cache-dir", type=Path, help="the dataset cache (default: train.py's, outputs/cache)")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    readme = args.readme if args.readme is not None else (None if args.quick else PROJECT_ROOT / "README.md")
    runs_dir = args.runs_dir or PROJECT_ROOT / "outputs" / "report" / mode
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")
    extra = (f"data.cache_dir={args.cache_dir.resolve()}",) if args.cache_dir else ()
    return generate(QUICK if args.quick else FULL, mode, runs_dir.resolve(), args.docs_dir.resolve(), readme,
                    tuple(args.tasks.split(",")), args.jobs, extra)


if __name__ == "__main__":
    print(main(sys.argv[1:]))
