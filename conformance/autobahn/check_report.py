#!/usr/bin/env python3
"""Gate on an Autobahn|Testsuite report: wstest exits 0 whatever happens, so this reads its
index.json and fails unless every case's behavior and behaviorClose are OK, NON-STRICT or
INFORMATIONAL, and at least --min-cases cases ran.

usage: check_report.py REPORTS_DIR [--min-cases N]
"""

import argparse
import collections
import json
import os
import sys

PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}


def case_key(case_id):
    return [int(part) for part in case_id.split(".")]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", help="the fuzzing client's outdir (holds index.json)")
    parser.add_argument("--min-cases", type=int, default=1, help="fewer cases run is a failure")
    args = parser.parse_args()

    index_path = os.path.join(args.reports, "index.json")
    try:
        with open(index_path) as f:
            index = json.load(f)
    except (OSError, ValueError) as e:
        print(f"autobahn: no readable report at {index_path}: {e}", file=sys.stderr)
        return 1

    counts = collections.Counter()
    failing, non_strict = [], []
    total = 0
    for agent, cases in sorted(index.items()):
        for case_id in sorted(cases, key=case_key):
            result = cases[case_id]
            total += 1
            behavior, close = result.get("behavior"), result.get("behaviorClose")
            counts[behavior] += 1
            if behavior not in PASSING or close not in PASSING:
                failing.append((agent, case_id, behavior, close, result.get("reportfile")))
            elif "NON-STRICT" in (behavior, close):
                non_strict.append(case_id)

    summary = ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))
    print(f"autobahn: {total} cases ({summary}); {len(failing)} failing")
    if non_strict:
        print(f"autobahn: NON-STRICT (accepted): {', '.join(non_strict)}")
    for agent, case_id, behavior, close, report in failing:
        detail = ""
        if report:
            try:
                with open(os.path.join(args.reports, report)) as f:
                    case = json.load(f)
                detail = f"\n    {case.get('description', '')}\n    {case.get('result', '')}"
                if close not in PASSING:
                    detail += f"\n    {case.get('resultClose', '')}"
            except (OSError, ValueError):
                pass
        print(f"FAILED {agent} {case_id}: behavior {behavior}, close {close}{detail}")
    if total < args.min_cases:
        print(f"autobahn: only {total} cases ran, expected at least {args.min_cases}",
              file=sys.stderr)
        return 1
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
