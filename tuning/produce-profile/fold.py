"""Folds `perf script` call-graph output into flame data: `root;...;leaf count` per stack.

Reads perf script's text on stdin (one block per sample: a header line, then one frame per
line, innermost first, then a blank line); writes the folded stacks, busiest first.
"""
import collections
import re
import sys

FRAME = re.compile(r"^\s+[0-9a-f]+\s+(.*?)(?:\s+\((.*)\))?$")


def frames(block):
    for line in block[1:]:
        m = FRAME.match(line)
        if not m:
            continue
        sym = m.group(1)
        if sym in ("[unknown]", "") and m.group(2) not in (None, "[unknown]"):
            sym = "[unknown in " + m.group(2).rsplit("/", 1)[-1] + "]"
        # One name per function: without the `+0x..` offset within it.
        yield re.sub(r"\+0x[0-9a-f]+$", "", sym).replace(";", ":")


def main():
    counts = collections.Counter()

    def add(block):
        stack = list(frames(block))
        if stack:
            counts[";".join(reversed(stack))] += 1

    block = []
    for line in sys.stdin:
        line = line.rstrip("\n")
        if line.strip():
            block.append(line)
        elif block:
            add(block)
            block = []
    if block:
        add(block)
    for stack, n in counts.most_common():
        print(f"{stack} {n}")


main()
