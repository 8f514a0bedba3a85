"""Claude Code (npm @anthropic-ai/claude-code, pinned in tests/claude_code) against the gateway,
offline: it asks for its own default model ids, which the demo's aliases name (sandbox-claude)."""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

from helpers import new_customer, npm_binary, rows_of, tokens_of

CLAUDE_CODE = Path(__file__).resolve().parent / "claude_code"
# Its native binary, from the platform package npm installs beside it (the wrapper's install
# script, which would copy it over bin/claude.exe, is not run).
BINARY = f"@anthropic-ai/claude-code-linux-{'arm64' if platform.machine() in ('aarch64', 'arm64') else 'x64'}/claude"
# Claude Code's default model ids (control_plane/ops/demo.py aliases them to sandbox-claude).
DEFAULT_MODELS = {"claude-opus-4-8", "claude-sonnet-4-6", "claude-haiku-4-5"}
# sandbox-claude's prices, nano-USD a token (control_plane/ops/demo.py)
PRICES = {"in": 3_000, "cr": 300, "cw": 3_750, "cw1h": 6_000, "out": 15_000, "rsn": 15_000}


def test_claude_code_prints_its_answer_and_each_request_is_billed_as_the_aliased_model(gateway, tmp_path,
                                                                                       database_independent):
    _email, key = new_customer(gateway)
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "ANTHROPIC_BASE_URL": gateway.url,
           "ANTHROPIC_API_KEY": key, "DISABLE_AUTOUPDATER": "1", "DISABLE_TELEMETRY": "1",
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
    done = subprocess.run([str(npm_binary(CLAUDE_CODE, BINARY)), "-p", "Say hi"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "Tollgate sandbox answer" in done.stdout
    rows = rows_of(gateway, key, 1)
    for row in rows:
        assert (row["requested_model"] in DEFAULT_MODELS, row["model"], row["status"], row["attempts"]) == (
            True, "sandbox-claude", 200, 1), row
        # The charge is the sandbox's token counts at sandbox-claude's prices (the prompt is
        # Claude Code's own, so its size is its version's: the test checks the price, per token).
        assert row["cost_nano"] == sum(count * PRICES[field] for field, count in tokens_of(row).items()), row
