#!/usr/bin/env python3
"""Print the value of a string constant from kind's Go sources (e.g. the default CNI manifest).

Usage: kind_consts.py NAME FILE.go [FILE.go ...]

Handles what kind uses for these constants: raw (`...`) and interpreted ("...") string literals and
other string constants of the same files, joined with `+`.
"""

import ast
import re
import sys
from pathlib import Path

TOKEN = re.compile(r'\s*(?:(`[^`]*`)|("(?:[^"\\]|\\.)*")|([A-Za-z_][A-Za-z0-9_]*)|(\+))', re.S)
DECL = re.compile(r"^(?:const|var)\s+([A-Za-z_][A-Za-z0-9_]*)\s*=\s*", re.M)


def parse_expr(src: str, pos: int):
    """Return (list of parts, end position) of a `+`-joined string expression starting at pos."""
    parts, expect_operand = [], True
    while True:
        m = TOKEN.match(src, pos)
        if not m:
            break
        raw, interp, ident, plus = m.groups()
        if expect_operand and raw is not None:
            parts.append(("lit", raw[1:-1]))
        elif expect_operand and interp is not None:
            parts.append(("lit", ast.literal_eval(interp)))
        elif expect_operand and ident is not None:
            parts.append(("ref", ident))
        elif not expect_operand and plus is not None:
            pass
        else:
            break
        expect_operand = not expect_operand
        pos = m.end()
    return parts, pos


def main() -> int:
    name, files = sys.argv[1], sys.argv[2:]
    decls = {}
    for f in files:
        src = Path(f).read_text(encoding="utf-8")
        for m in DECL.finditer(src):
            parts, _ = parse_expr(src, m.end())
            if parts:
                decls[m.group(1)] = parts

    def value(n: str, depth: int = 0) -> str:
        if n not in decls or depth > 20:
            raise SystemExit(f"kind_consts.py: no string constant {n} in {files}")
        return "".join(v if k == "lit" else value(v, depth + 1) for k, v in decls[n])

    sys.stdout.write(value(name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
