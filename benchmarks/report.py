"""Prints a pytest-benchmark JSON file as a markdown table: median per test and, within each
group (one comparison measured side by side), each entry's median over the group's fastest.

Usage: ``python benchmarks/report.py out.json``
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict


def main(path: str) -> None:
    with open(path) as fh:
        data = json.load(fh)
    groups = defaultdict(dict)
    for bench in data["benchmarks"]:
        params = bench.get("params") or {}
        name = params.get("impl") or bench["name"].split("[")[-1].rstrip("]")
        groups[bench["group"]][name] = bench
    machine = data.get("machine_info", {})
    print(f"machine: {machine.get('cpu', {}).get('brand_raw', '?')}, "
          f"{machine.get('cpu', {}).get('count', '?')} cores; python {machine.get('python_version')}")
    print()
    print("| group | entry | median (ms) | x fastest | memory (bytes) |")
    print("|---|---|---|---|---|")
    for group, entries in groups.items():
        fastest = min(b["stats"]["median"] for b in entries.values())
        for name, bench in entries.items():
            median = bench["stats"]["median"]
            ratio = f"{median / fastest:.1f}"
            info = bench.get("extra_info", {})
            memory = info.get("peak_bytes", info.get("saved_for_backward_bytes", "-"))
            print(f"| {group} | {name} | {median * 1e3:.2f} | {ratio} | {memory} |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python benchmarks/report.py BENCHMARK_JSON")
    main(sys.argv[1])
