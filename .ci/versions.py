"""The installed versions of fusion-research's dependency closure (test extra included), one `name==version`
a line: what `constraints.txt` pins. CI prints them and their differences from constraints.txt, so that a
failure on a fresh machine can be traced to a version that moved.

    python .ci/versions.py > constraints.txt     # after a green suite: the versions it passed with
    python .ci/versions.py --diff constraints.txt
"""

import argparse
import re
from importlib import metadata
from pathlib import Path


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(root: str, extras: set[str]) -> dict[str, str]:
    """{canonical name: version} of every installed distribution `root` needs, directly or not."""
    found, expanded, todo = {}, {}, [(root, extras)]
    while todo:
        name, wanted = todo.pop()
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional or platform-specific requirement that is not installed
        key = canonical(dist.metadata["Name"])
        if key in found and wanted <= expanded.get(key, set()):
            continue
        expanded[key] = expanded.get(key, set()) | wanted
        found[key] = dist.version
        for req in dist.requires or []:
            spec, _, marker = req.partition(";")
            extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
            if extra and extra.group(1) not in wanted:
                continue
            dep, dep_extras = re.match(r"([A-Za-z0-9._-]+)\s*(?:\[([^\]]*)\])?", spec.strip()).groups()
            if canonical(dep) not in found or dep_extras:
                todo.append((dep, {e.strip() for e in (dep_extras or "").split(",") if e.strip()}))
    found.pop(canonical(root))
    return dict(sorted(found.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--diff", help="a constraints file to compare the installed versions with")
    args = parser.parse_args()
    installed = closure("fusion-research", {"test"})
    if not args.diff:
        print("\n".join(f"{name}=={version}" for name, version in installed.items()))
        return
    pinned = dict(line.split("==") for line in Path(args.diff).read_text().split() if "==" in line)
    moved = [f"{n} {pinned.get(n, '-')} -> {v}" for n, v in installed.items() if pinned.get(n) != v]
    print(f"{len(installed)} packages installed, {len(moved)} differ from {args.diff}")
    print("\n".join(moved))


if __name__ == "__main__":
    main()
