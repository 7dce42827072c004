"""`python -m schemas export DIR`: regenerate the JSON Schema files."""

from __future__ import annotations

import argparse
from pathlib import Path

from schemas.export import export_json_schemas


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schemas", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="write one JSON Schema per topic plus event.json")
    export.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    for path in export_json_schemas(args.directory):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
