"""The command-line convention of every `python -m <module>` of the project (ssd, benchmark,
compliance): argparse with prog `python -m <module>`, and every failure one line on stderr,
`<module>: <reason>`, with status 2 for a wrong command line and 1 otherwise."""

from __future__ import annotations

import argparse
from typing import NoReturn


class Parser(argparse.ArgumentParser):
    """An ArgumentParser for `python -m <module>` whose description is the first line of `doc`."""

    def __init__(self, module: str, doc: str, **kwargs):
        super().__init__(prog=f"python -m {module}", description=doc.splitlines()[0], **kwargs)
        self.module = module

    def error(self, message: str) -> NoReturn:
        """argparse's own errors (unknown flag, missing argument): one line instead of usage + error."""
        self.exit(2, f"{self.module}: {message} (--help lists the arguments)\n")

    def fail(self, reason: str) -> NoReturn:
        """Ends the program: `<module>: <reason>` on stderr, status 1."""
        self.exit(1, f"{self.module}: {reason}\n")
