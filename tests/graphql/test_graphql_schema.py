"""The committed SDL is the code's SDL, and the CLI prints it."""

from __future__ import annotations

import subprocess
import sys

from service.graphql import schema_sdl
from service.settings import PROJECT_ROOT

SDL = PROJECT_ROOT / "schema" / "schema.graphql"


def test_committed_schema_matches_the_code():
    assert SDL.read_text() == schema_sdl(), (
        "schema/schema.graphql drifted from the code: run `strengths-api graphql-schema > schema/schema.graphql`"
    )


def test_cli_prints_the_schema():
    out = subprocess.run([sys.executable, "-m", "service.cli", "graphql-schema"], capture_output=True, text=True,
                         check=True, cwd=PROJECT_ROOT)
    assert out.stdout == SDL.read_text()
