"""Time per character of the DLT template matcher (``airflow_qikberry.dlt.match``), as texts grow.

A linear matcher spends the same time per character at every size; a backtracking one (a regex with a
bounded group per variable) grows much faster on texts built to make it try every split. Three texts per
size: a rendered template that matches, an adversarial one (every position a candidate for every fixed part,
a variable over the limit at the end: the bounded search runs), and a rendered text with one fixed word
changed. Prints microseconds per character at each size and the ratio of the largest size's figure to the
smallest's (target: at most 2, i.e. linear); always exits 0.

Usage: ``python bench/dlt_match.py [--sizes 1000,10000,100000] [--repeat 5]``
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

from airflow_qikberry.dlt import TemplateBody, match

TARGET = 2.0


def texts(size: int) -> dict[str, tuple[TemplateBody, str]]:
    adversarial = TemplateBody.parse("{{a}}x{{b}}x{{c}}x{{d}}x{{e}}x{{f}}")
    body = TemplateBody.parse("Dear {{name}}, your bill of Rs {{amount}} is due on {{due}}. -Acme")
    # One long run of short values: the leftmost search, lines of the body repeated.
    lines = "\n".join([body.source] * max(1, size // 70))
    long_body = TemplateBody.parse(lines)
    rendered = long_body.render({"name": "Asha", "amount": "499.00", "due": "5 Dec"})
    return {
        "matches": (long_body, rendered),
        "adversarial": (adversarial, "x" * size),
        "changed word": (
            long_body,
            rendered[: len(rendered) // 2] + rendered[len(rendered) // 2 :].replace("bill", "Bill", 1),
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    per_char: dict[str, list[float]] = {}
    for size in sizes:
        for name, (body, text) in texts(size).items():
            runs = []
            gc.collect()
            gc.disable()  # the matcher's own time, not a collection that happens to fall in it
            for _ in range(args.repeat):
                start = time.perf_counter()
                verdict = match(body, text)
                runs.append(time.perf_counter() - start)
            gc.enable()
            micro = statistics.median(runs) * 1e6 / len(text)
            per_char.setdefault(name, []).append(micro)
            print(f"{name:>13} {len(text):>8} chars  {micro:8.4f} us/char  ({verdict.kind})")
    for name, figures in per_char.items():
        ratio = figures[-1] / figures[0] if figures[0] else float("inf")
        print(f"{name:>13}: largest/smallest us per char = {ratio:.2f} (target <= {TARGET:g})")


if __name__ == "__main__":
    main()
