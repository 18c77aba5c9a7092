#!/usr/bin/env python3
"""Lists Rust files over a line budget and functions over a length budget.

Usage: scripts/size-check.py [--file-max N] [--fn-max N] [paths...]
Exits 1 when anything is over budget, so it can gate a change.
A function is measured from its `fn` line to the line that closes its body
(brace counting that skips strings, chars and comments well enough for our code).
"""
import argparse
import os
import re
import sys

FN_RE = re.compile(r'^\s*(pub(\([^)]*\))?\s+)?(async\s+)?(const\s+)?(unsafe\s+)?(extern\s+"[^"]*"\s+)?fn\s+([A-Za-z0-9_]+)')


def strip(line, state):
    """Removes strings, chars and comments; state carries block comments and raw strings."""
    out = []
    i = 0
    n = len(line)
    while i < n:
        if state["block"]:
            end = line.find("*/", i)
            if end < 0:
                return "".join(out)
            state["block"] = False
            i = end + 2
            continue
        if state["raw"] is not None:
            end = line.find('"' + "#" * state["raw"], i)
            if end < 0:
                return "".join(out)
            i = end + 1 + state["raw"]
            state["raw"] = None
            continue
        if state["str"]:
            if line[i] == "\\":
                i += 2
                continue
            if line[i] == '"':
                state["str"] = False
            i += 1
            continue
        c = line[i]
        if line.startswith("//", i):
            break
        if line.startswith("/*", i):
            state["block"] = True
            i += 2
            continue
        m = re.match(r'b?r(#*)"', line[i:])
        if m and (i == 0 or not (line[i - 1].isalnum() or line[i - 1] == "_")):
            state["raw"] = len(m.group(1))
            i += len(m.group(0))
            continue
        if c == '"':
            state["str"] = True
            i += 1
            continue
        if c == "'":
            m = re.match(r"'(\\.|\\u\{[0-9a-fA-F]+\}|[^\\'])'", line[i:])
            if m:
                i += len(m.group(0))
                continue
        out.append(c)
        i += 1
    return "".join(out)


def scan(path, fn_max):
    long_fns = []
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    state = {"block": False, "raw": None, "str": False}
    stack = []  # (name, start_line, depth_at_open)
    depth = 0
    pending = None
    for no, raw in enumerate(lines, 1):
        m = FN_RE.match(raw)
        code = strip(raw, state)
        if m:
            pending = (m.group(7), no)
        for ch in code:
            if ch == "{":
                depth += 1
                if pending:
                    stack.append((pending[0], pending[1], depth))
                    pending = None
            elif ch == "}":
                if stack and stack[-1][2] == depth:
                    name, start, _ = stack.pop()
                    length = no - start + 1
                    if length > fn_max:
                        long_fns.append((name, start, length))
                depth -= 1
            elif ch == ";" and pending:
                pending = None  # a declaration without a body
    return len(lines), long_fns


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--file-max", type=int, default=500)
    ap.add_argument("--fn-max", type=int, default=80)
    ap.add_argument("paths", nargs="*", default=["src"])
    args = ap.parse_args()
    over = False
    for root in args.paths:
        files = [root] if root.endswith(".rs") else [
            os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(".rs")]
        for path in sorted(files):
            count, fns = scan(path, args.fn_max)
            if count > args.file_max:
                over = True
                print(f"{path}: {count} lines (budget {args.file_max})")
            for name, start, length in fns:
                over = True
                print(f"{path}:{start}: fn {name} is {length} lines (budget {args.fn_max})")
    sys.exit(1 if over else 0)


if __name__ == "__main__":
    main()
