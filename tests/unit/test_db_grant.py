"""`c2m db grant`: the statements for a server, the users.xml form, and one clear line for
a mistake (tests/integration/test_factory_access.py runs the policies in the engine)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path


def _c2m(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.cli", "db", "grant", *args],
                          env={**os.environ, "C2M_DATA_DIR": str(tmp_path), **env},
                          capture_output=True, text=True, timeout=60, check=False)


def test_print_sql_with_a_password_from_the_environment(tmp_path: Path) -> None:
    out = _c2m(tmp_path, "--factory", "F001", "--print-sql", "--password-env", "PW",
               PW="very-secret")
    assert out.returncode == 0, out.stderr
    assert "very-secret" not in out.stdout + out.stderr
    assert hashlib.sha256(b"very-secret").hexdigest() in out.stdout
    lines = out.stdout.splitlines()
    assert lines[0].startswith("CREATE USER OR REPLACE `c2m_factory_F001`")
    assert any(ln.startswith("CREATE ROW POLICY OR REPLACE `c2m_factory_F001` ON c2m.alerts ")
               for ln in lines)
    assert not any("demand_cells" in ln or "late_events" in ln for ln in lines)


def test_a_generated_password_is_shown_once_on_stderr(tmp_path: Path) -> None:
    out = _c2m(tmp_path, "--factory", "F002", "--users-xml")
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("password for c2m_factory_F002") == 1
    password = out.stderr.strip().rsplit(" ", 1)[1]
    assert password not in out.stdout
    assert hashlib.sha256(password.encode()).hexdigest() in out.stdout


def test_mistakes_are_one_line_without_a_traceback(tmp_path: Path) -> None:
    for args, env in ((["--factory", "F001"], {}),  # the embedded engine has no users
                      (["--factory", "", "--print-sql"], {}),
                      (["--factory", "F001", "--print-sql", "--password-env", "NOPE"], {})):
        out = _c2m(tmp_path, *args, **env)
        assert out.returncode != 0, args
        assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, (
            args, out.stderr)
        assert "password for" not in out.stderr  # nothing was created: no password shown
