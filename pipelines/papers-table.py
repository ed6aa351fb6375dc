#!/usr/bin/env python3
"""Make the papers' tables from bm-score --aggregate outputs (standard library only).

    papers-table.py --paper 000 --dataset nih|ham10000 --out OUTDIR --json RESULTS.json EXP...
    papers-table.py --paper 001 --out OUTDIR --json RESULTS.json PART=FILE...

Paper 000: reads OUTDIR/EXP/aggregate.json for each EXP and prints a Markdown
table (one row per experiment, mean +- std over the seeds) on stdout.
Paper 001: each PART=FILE is a bm-score JSON (zero-shot, retrieval) or an
aggregate (few-shot fractions); one section per part.
Both write every input under its name into RESULTS.json."""
import argparse
import json
import os
import sys

COLS_000 = {
    "ham10000": [("accuracy", "accuracy (micro)"), ("balanced_accuracy", "accuracy (macro)"),
                 ("auc_macro", "AUC macro"), ("f1_macro", "F1 macro")],
    "nih": [("label_accuracy_micro", "accuracy (micro)"), ("exact_match", "exact match"),
            ("auc_macro", "AUC macro"), ("auc_micro", "AUC micro"), ("f1_macro", "F1 macro"),
            ("f1_micro", "F1 micro"), ("sensitivity_macro", "sensitivity macro"),
            ("sensitivity_micro", "sensitivity micro")],
}
KEYS_001 = {
    "multiclass": [("accuracy", "accuracy"), ("balanced_accuracy", "balanced acc."),
                   ("auc_macro", "AUC macro")],
    "multilabel": [("auc_macro", "AUC macro"), ("auc_micro", "AUC micro"),
                   ("f1_macro", "F1 macro"), ("label_accuracy_micro", "label accuracy")],
}
RETRIEVAL = ["i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10"]


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"papers-table: {path}: {e}")


def cell(agg, key):
    m, s = agg.get("mean", {}).get(key), agg.get("std", {}).get(key)
    if m is None:
        return "-"
    return f"{m:.3f} ± {s:.3f}" if s is not None else f"{m:.3f}"


def plain(run, key):
    v = run.get(key)
    return "-" if v is None else f"{v:.3f}"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def paper000(args):
    cols = COLS_000[args.dataset]
    results = {"paper": "000", "dataset": args.dataset, "experiments": {}}
    rows = []
    for exp in args.items:
        agg = load(os.path.join(args.out, exp, "aggregate.json"))
        results["experiments"][exp] = agg
        rows.append([exp, str(agg.get("n_runs", "?"))] + [cell(agg, k) for k, _ in cols])
    print(f"# Seed 000 on {args.dataset}: test split, mean ± std over seeds\n")
    print(table(["experiment", "seeds"] + [name for _, name in cols], rows))
    return results


def paper001(args):
    results = {"paper": "001", "parts": {}}
    print("# Seed 001: zero-shot, few-shot linear probe, retrieval (test splits)")
    for item in args.items:
        name, _, path = item.partition("=")
        r = load(path)
        results["parts"][name] = r
        print(f"\n## {name}\n")
        if r.get("task") == "retrieval":
            print(table(["pairs"] + ["R@" + k.split("_r")[1] + (" i2t" if k[0] == "i" else " t2i")
                                     for k in RETRIEVAL],
                        [[str(r.get("n"))] + [plain(r, k) for k in RETRIEVAL]]))
        else:
            keys = KEYS_001.get(r.get("task"), KEYS_001["multiclass"])
            if "mean" in r:
                print(table(["seeds"] + [n for _, n in keys],
                            [[str(r.get("n_runs"))] + [cell(r, k) for k, _ in keys]]))
                continue
            print(table(["n"] + [n for _, n in keys], [[str(r.get("n"))] + [plain(r, k) for k, _ in keys]]))
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--paper", choices=["000", "001"], required=True)
    ap.add_argument("--dataset", choices=["nih", "ham10000"])
    ap.add_argument("--out", required=True)
    ap.add_argument("--json", required=True)
    ap.add_argument("items", nargs="+")
    args = ap.parse_args()
    if args.paper == "000" and not args.dataset:
        ap.error("--dataset is needed for paper 000")
    results = paper000(args) if args.paper == "000" else paper001(args)
    tmp = args.json + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1)
    os.replace(tmp, args.json)


if __name__ == "__main__":
    main()
