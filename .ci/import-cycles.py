#!/usr/bin/env python3
"""Lists import circles between the modules of each crate.

A module is a source file (`src/run/receiver.rs` is `run::receiver`,
`src/run/mod.rs` is `run`). An edge A -> B means A's code names an item of
B through `crate::`, `super::` or `self::` paths, in a `use` or inline.
`pub use` re-exports are a facade, not a use, and are skipped; so is a
module naming its own descendants' items through their `mod` declaration.
Prints every strongly connected set of two or more modules and exits 1 when
there is one; `--graph` prints every edge.
"""
import os
import re
import sys

CRATES = ["src", "protocol/src", "reference-server/src"]


def modules(root):
    mods = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, root)[:-3].split(os.sep)
            if rel[-1] in ("mod", "lib", "main"):
                rel = rel[:-1]
            mods[tuple(rel)] = path
    return mods


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//")[0] for line in text.splitlines())


def cfg_test_cut(text):
    # Unit tests (`#[cfg(test)] mod tests { … }`) may reach anywhere.
    m = re.search(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", text)
    return text[: m.start()] if m else text


def expand(path):
    """`a::{b, c::{d}}` -> [`a::b`, `a::c::d`] (enough for use lists)."""
    m = re.match(r"^(.*?)\{(.*)\}$", path, flags=re.S)
    if not m:
        return [path]
    head, body = m.group(1), m.group(2)
    parts, depth, cur = [], 0, ""
    for ch in body:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    out = []
    for p in parts:
        p = p.strip()
        if p:
            out.extend(expand(head + p))
    return out


def resolve(mods, here, is_dir_mod, path):
    segs = [s.strip() for s in path.split("::") if s.strip()]
    if not segs:
        return None
    if segs[0] == "crate":
        base, segs = [], segs[1:]
    elif segs[0] in ("super", "self"):
        base = list(here) if is_dir_mod else list(here[:-1])
        base_self = list(here)
        if segs[0] == "self":
            base, segs = base_self, segs[1:]
        else:
            base = list(here[:-1])
            segs = segs[1:]
            while segs and segs[0] == "super":
                base = base[:-1]
                segs = segs[1:]
    else:
        return None
    target = list(base)
    best = tuple(base)
    for s in segs:
        target.append(s)
        if tuple(target) in mods:
            best = tuple(target)
        else:
            break
    return best


def edges_of(mods):
    edges = {m: set() for m in mods}
    for here, path in mods.items():
        text = cfg_test_cut(strip_comments(open(path, encoding="utf-8").read()))
        is_dir_mod = os.path.basename(path) in ("mod.rs", "lib.rs", "main.rs")
        uses = []
        for m in re.finditer(r"(pub(\([^)]*\))?\s+)?use\s+([^;]+);", text):
            if m.group(1) and m.group(1).strip().startswith("pub") and "(" not in (m.group(1) or ""):
                continue  # a `pub use` re-export
            uses.extend(expand(re.sub(r"\s+", "", m.group(3))))
        body = re.sub(r"(pub(\([^)]*\))?\s+)?use\s+[^;]+;", "", text)
        uses.extend(re.findall(r"\b((?:crate|super|self)(?:::\w+)+)", body))
        for u in uses:
            t = resolve(mods, here, is_dir_mod, u)
            if t is None or t == here:
                continue
            if t[: len(here)] == here:
                continue  # into its own descendants: the parent owns them
            edges[here].add(t)
    return edges


def sccs(edges):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(comp)

    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index:
            visit(v)
    return [c for c in out if len(c) > 1]


def name(m):
    return "::".join(m) or "crate"


def main():
    graph = "--graph" in sys.argv
    found = False
    for root in CRATES:
        mods = modules(root)
        edges = edges_of(mods)
        if graph:
            for a in sorted(edges):
                for b in sorted(edges[a]):
                    print(f"{root}: {name(a)} -> {name(b)}")
        for comp in sccs(edges):
            found = True
            names = sorted(name(m) for m in comp)
            print(f"{root}: import circle: {', '.join(names)}")
            inside = set(comp)
            for a in sorted(comp):
                for b in sorted(edges[a] & inside):
                    print(f"    {name(a)} -> {name(b)}")
    if not found:
        print("no import circles in " + ", ".join(CRATES))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
