#!/usr/bin/env python
"""Reassemble what ``scripts/gpu_train.py`` sent back into network folders.

For each ``<name>.tar`` in the folder given, unpacks it into ``trained_networks/<name>/`` (or ``--dest``) and joins
``<name>.weights.h5.part*`` into ``model.weights.h5`` there::

    python scripts/gpu_unpack.py /path/to/returned/files [--dest trained_networks]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tarfile
from pathlib import Path


def unpack(source: Path, dest: Path) -> list[Path]:
    """Unpack every network found in ``source`` into ``dest/<name>/``; return the network folders."""
    folders = []
    for tar_path in sorted(source.glob("*.tar")):
        name = tar_path.stem
        target = dest / name
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tar_path) as tar:
            for member in tar.getmembers():
                if not member.name.startswith(f"{name}/") or ".." in Path(member.name).parts:
                    continue
                if member.isfile():
                    member_path = target / Path(member.name).relative_to(name)
                    member_path.parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(member) as src, open(member_path, "wb") as out:
                        shutil.copyfileobj(src, out)
        parts = sorted(source.glob(f"{name}.weights.h5.part*"), key=lambda p: int(p.name.rsplit("part", 1)[1]))
        if parts:
            with open(target / "model.weights.h5", "wb") as out:
                for part in parts:
                    out.write(part.read_bytes())
        folders.append(target)
        print(f"{name}: {target} ({len(parts)} weight part(s))")
    return folders


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("source", type=Path, help="folder with <name>.tar and <name>.weights.h5.part* files")
    p.add_argument("--dest", type=Path, default=Path(__file__).resolve().parent.parent / "trained_networks")
    args = p.parse_args(argv)
    if not unpack(args.source, args.dest):
        print(f"error: no <name>.tar in {args.source}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
