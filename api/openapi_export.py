"""Write the API's OpenAPI schema to a file: `python -m api.openapi_export docs/openapi.json`.

`--check` compares instead of writing and exits 1 when the file is stale. The schema does not
depend on the settings, so it is built from the defaults (no environment read) and two keys.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path
from typing import Any

from api.main import create_app
from common.settings import Settings

DEFAULT_PATH = Path("docs/openapi.json")
REGENERATE = f"python -m api.openapi_export {DEFAULT_PATH}"


def openapi_schema() -> dict[str, Any]:
    # model_construct: the defaults, not whatever HERALD_* variables this shell happens to have;
    # a client key and a payload key the app needs to be built, used for nothing.
    settings = Settings.model_construct(
        api_keys=["openapi-export"], encryption_key=base64.b64encode(bytes(32)).decode()
    )
    return create_app(settings).openapi()


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api.openapi_export", description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_PATH, help=f"default: {DEFAULT_PATH}")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs from the app's schema")
    args = parser.parse_args(argv)
    text = render(openapi_schema())
    if args.check:
        current = args.path.read_text() if args.path.exists() else ""
        if current != text:
            print(f"{args.path} is stale; regenerate it with: {REGENERATE}", file=sys.stderr)
            return 1
        print(f"{args.path} is up to date")
        return 0
    args.path.parent.mkdir(parents=True, exist_ok=True)
    args.path.write_text(text)
    print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
