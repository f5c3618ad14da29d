"""The command line of the scripts that act on what a run wrote (evaluate, export, summarize).

They take Hydra's override grammar, as train.py does (key=value, typed by a dataclass schema,
so that a misspelt key or a wrong type fails and names the key), but not @hydra.main, which
would make a run folder and a log for every call of a command that writes only where it is
told (stdout, an export folder, a sweep's summary).
"""

from __future__ import annotations

import json
import sys
from typing import Callable

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


class CommandLineError(ValueError):
    """A command line that names an unknown key, a wrongly typed value, or misses a required one."""


def parse_overrides(schema: type, argv: list[str]) -> DictConfig:
    """`key=value` arguments over the schema's defaults; every required key (???) must be given."""
    malformed = [arg for arg in argv if "=" not in arg]
    if malformed:
        raise CommandLineError(f"arguments are key=value, got {malformed[0]!r}; keys: {', '.join(_keys(schema))}")
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.from_dotlist(argv))
    except OmegaConfBaseException as error:
        raise CommandLineError(f"{str(error).splitlines()[0]}; keys: {', '.join(_keys(schema))}") from None
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise CommandLineError(f"{missing[0]}=... is required")
    return cfg


def _keys(schema: type) -> list[str]:
    return list(OmegaConf.structured(schema).keys())


def run(main: Callable[[list[str]], dict]) -> None:
    """Run a script's main on sys.argv: its report as one JSON line on stdout, or, for any error,
    one line `error: ...` on stderr and exit status 1 (no traceback)."""
    try:
        print(json.dumps(main(sys.argv[1:])))
    except SystemExit:
        raise
    except Exception as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
