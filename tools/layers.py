#!/usr/bin/env python3
"""tools/layers.py: checks that src/ keeps its layers (README.md, "Layout").

usage: tools/layers.py [--library build/libsqlprodd_core.a] [--graph]

Two rules, each a failure when broken:
  1. an #include in src/LAYER/ names a header of LAYER or of a layer below it
     in LAYERS (never one above: that would be a call pointing up);
  2. with --library, the link graph of the built core library (object A -> B
     when A uses a symbol that B defines, read with nm) has no circle between
     files, and no circle between folders.
--graph prints the folder graph and every circle found, for a closing note.
"""
import argparse
import collections
import pathlib
import re
import subprocess
import sys

# Low to high. Files of a layer may use their own layer and those before it.
LAYERS = ["core", "crypto", "policy", "config", "db", "archive", "offsite", "replicate",
          "restore", "jobs", "report", "cli", "agent", "(main)"]
# cli and agent are siblings, one above the other in the list only because a
# list has an order: neither may use the other.
SIBLINGS = {("cli", "agent"), ("agent", "cli")}

ROOT = pathlib.Path(__file__).resolve().parent.parent
INCLUDE = re.compile(r'^#include "([^"]+)"', re.M)


def layer_of(relative):
    parts = pathlib.PurePath(relative).parts
    return parts[0] if len(parts) > 1 else "(main)"


def may_use(own, other):
    """Whether files of layer `own` may include or call files of `other`."""
    return LAYERS.index(other) <= LAYERS.index(own) and (own, other) not in SIBLINGS


def include_violations():
    problems = []
    for path in sorted((ROOT / "src").rglob("*.[ch]")):
        relative = path.relative_to(ROOT / "src")
        own = layer_of(relative)
        for match in INCLUDE.finditer(path.read_text()):
            target = layer_of(match.group(1))
            if target not in LAYERS:
                problems.append(f"src/{relative}: includes \"{match.group(1)}\", "
                                f"which is in no layer of tools/layers.py")
            elif not may_use(own, target):
                problems.append(f"src/{relative}: includes \"{match.group(1)}\": "
                                f"{own} may not use {target}, a layer above it")
    return problems


def link_graph(library):
    """object -> set of objects whose symbols it uses."""
    output = subprocess.check_output(["nm", "-A", str(library)], text=True)
    defined, used = {}, collections.defaultdict(set)
    for line in output.splitlines():
        # libsqlprodd_core.a:agent.c.o:0000 T agent_run
        location, _, rest = line.rpartition(":")
        fields = rest.split()
        member = location.split(":")[-1]
        if len(fields) == 3 and fields[1] in "TDBRC":
            defined[fields[2]] = member
        elif len(fields) == 2 and fields[0] == "U":
            used[member].add(fields[1])
    graph = collections.defaultdict(set)
    for member, symbols in used.items():
        for symbol in symbols:
            if symbol in defined and defined[symbol] != member:
                graph[member].add(defined[symbol])
    return graph


def circles(graph):
    """The strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def member_folders():
    """Object member name (agent.c.o) -> its folder, from the source tree."""
    folders = {}
    for path in (ROOT / "src").rglob("*.c"):
        folders[path.name + ".o"] = layer_of(path.relative_to(ROOT / "src"))
    return folders


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--library", help="the built libsqlprodd_core.a")
    parser.add_argument("--graph", action="store_true", help="print the folder graph")
    options = parser.parse_args()
    problems = include_violations()
    if options.library:
        folders = member_folders()
        graph = link_graph(options.library)
        named = {f"{folders.get(a, '?')}/{a[:-4]}": {f"{folders.get(b, '?')}/{b[:-4]}" for b in bs}
                 for a, bs in graph.items()}
        folder_graph = collections.defaultdict(set)
        for a, bs in named.items():
            for b in bs:
                if a.split("/")[0] != b.split("/")[0]:
                    folder_graph[a.split("/")[0]].add(b.split("/")[0])
        if options.graph:
            for folder in sorted(folder_graph, key=lambda f: LAYERS.index(f) if f in LAYERS else 99):
                print(f"  {folder} -> {' '.join(sorted(folder_graph[folder]))}")
        for component in circles(named):
            problems.append("files call each other in a circle: " + " <-> ".join(component))
        for component in circles(folder_graph):
            problems.append("folders call each other in a circle: " + " <-> ".join(component))
        for a, bs in named.items():
            for b in bs:
                fa, fb = a.split("/")[0], b.split("/")[0]
                if fa in LAYERS and fb in LAYERS and not may_use(fa, fb):
                    problems.append(f"{a} calls {b}: {fa} may not use {fb}, a layer above it")
    for problem in problems:
        print(problem)
    print(f"layers: {len(problems)} problem{'s' if len(problems) != 1 else ''}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
