"""``timm-pushpull compare a.json b.json``: results.json files side by side, and their report."""

from __future__ import annotations

import argparse

from ...errors import InvalidArgumentError
from ...locking import exclusive_folder
from ..report import format_comparison, write_report
from ..results import load_results

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", nargs="+", help="results.json files (or folders holding one)")
    parser.add_argument("--labels", help="comma list of column names (default: model names)")
    parser.add_argument("--out", help="also write report.md and the plots into this folder")


def main(args: argparse.Namespace) -> int:
    results = [load_results(path) for path in args.results]
    labels = [label.strip() for label in args.labels.split(",")] if args.labels else None
    if labels is not None and len(labels) != len(results):
        raise InvalidArgumentError(f"--labels has {len(labels)} names for {len(results)} results")
    print(format_comparison(results, labels))
    if args.out:
        with exclusive_folder(args.out, "--out"):  # not while a run writes there
            for path in write_report(results, args.out, labels=labels):
                print(f"wrote {path}")
    return 0
