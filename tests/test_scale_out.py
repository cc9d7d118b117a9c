"""Beyond one machine, on loopback: a department deployment's processes, each as if on its own machine.

One Redis and one Chroma (the hub), the indexer run once on the hub and its BM25 files copied to each
gateway machine, two inference servers (the Macs), two gateways and two job workers, and Debian's HAProxy
(``config/haproxy.cfg`` as shipped) in front of the gateways and of the inference servers, health checks
on both. Students book, chat and finish through the proxy while one gateway and one inference server are
killed half-way; every turn, invitation, summary email and Cal.com note happens exactly once.

``make scale-out`` (``pytest -m scale``): about five minutes on two cores.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller

from services.inference.probe import wait_for_generation
from services.settings import REPO_ROOT
from tests.chaos import harness as h
from tests.fakes.calcom import FakeCalcom, running_fake_calcom
from tests.fixtures.ports import free_port, port_open, wait_until
from tests.fixtures.smtp import SmtpCapture
from tests.fixtures.stack import TEST_CORPUS, WEBHOOK_SECRET

pytestmark = [pytest.mark.scale, pytest.mark.slow]

BIN = Path(sys.executable).parent
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
STUDENTS = int(os.environ.get("SCALE_STUDENTS", "4"))
TURNS_BEFORE_FAULT = 2
REDIS_FLAGS = ("--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--dir")


@dataclass
class Program:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Department:
    root: Path
    base_env: dict[str, str]
    smtp: SmtpCapture
    calcom: FakeCalcom
    programs: dict[str, Program] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['proxy']}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.ports['redis']}/0"

    def machine(self, name: str, **settings: str) -> dict[str, str]:
        """The environment of one machine: its own data folder, the shared services' addresses."""
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        return {**self.base_env, "INTAKE_DATA_DIR": str(folder), **settings}

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Program:
        log = self.root / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        self.programs[name] = Program(name, proc, log)
        return self.programs[name]

    def stop_all(self) -> None:
        for program in reversed(list(self.programs.values())):
            if program.proc.poll() is None:
                program.proc.terminate()
        for program in self.programs.values():
            try:
                program.proc.wait(20)
            except subprocess.TimeoutExpired:
                program.proc.kill()
                program.proc.wait()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _bring_up(dept: Department, model: Path) -> None:
    ports = dept.ports
    for name in ("redis", "chroma", "proxy", "proxy_inference", "model1", "model2", "gateway1", "gateway2"):
        ports.setdefault(name, free_port())
    hub = dept.machine("hub")
    chroma = f"{hub['INTAKE_DATA_DIR']}/chroma"
    dept.start(
        "redis",
        [str(BIN / "redis-server"), "--port", str(ports["redis"]), *REDIS_FLAGS, hub["INTAKE_DATA_DIR"]],
        hub,
    )
    dept.start(
        "chroma",
        [str(BIN / "chroma"), "run", "--host", "127.0.0.1", "--port", str(ports["chroma"]), "--path", chroma],
        {**hub, "ANONYMIZED_TELEMETRY": "False"},
    )
    for n in (1, 2):  # the Macs
        mac = dept.machine(f"model{n}", INTAKE_MODEL=str(model), INTAKE_ADAPTER_PATH="")
        mac["INTAKE_INFERENCE_PORT"] = str(ports[f"model{n}"])
        (Path(mac["INTAKE_DATA_DIR"]) / "hf" / "hub").mkdir(parents=True, exist_ok=True)
        dept.start(f"model{n}", [sys.executable, "-m", "services.inference.server"], mac)
    wait_until(lambda: port_open(ports["redis"]), 30, "redis")
    wait_until(lambda: _answers(f"http://127.0.0.1:{ports['chroma']}/api/v2/heartbeat"), 90, "chroma")
    subprocess.run(
        [sys.executable, "-m", "services.indexer", "build"], env=hub, check=True, cwd=REPO_ROOT, timeout=600
    )
    proxy_env = {
        **hub,
        "INTAKE_PROXY_BIND": f"127.0.0.1:{ports['proxy']}",
        "INTAKE_PROXY_INFERENCE_BIND": f"127.0.0.1:{ports['proxy_inference']}",
        "INTAKE_GATEWAY_1": f"127.0.0.1:{ports['gateway1']}",
        "INTAKE_GATEWAY_2": f"127.0.0.1:{ports['gateway2']}",
        "INTAKE_INFERENCE_1": f"127.0.0.1:{ports['model1']}",
        "INTAKE_INFERENCE_2": f"127.0.0.1:{ports['model2']}",
    }
    dept.start("haproxy", [HAPROXY, "-db", "-f", str(REPO_ROOT / "config" / "haproxy.cfg")], proxy_env)
    for n in (1, 2):
        url = f"http://127.0.0.1:{ports[f'model{n}']}/v1"
        ready = asyncio.run(wait_for_generation(url, "default_model", timeout=60, wait=240))
        assert ready.ok, f"model{n}: {ready.error}\n{dept.programs[f'model{n}'].text()[-2000:]}"
    for n in (1, 2):  # the gateway machines: their own copy of the hub's BM25 index
        env = dept.machine(f"app{n}", INTAKE_PORT=str(ports[f"gateway{n}"]))
        shutil.copytree(Path(hub["INTAKE_DATA_DIR"]) / "index", Path(env["INTAKE_DATA_DIR"]) / "index")
        dept.start(f"gateway{n}", [sys.executable, "-m", "services.gateway.app"], env)
        dept.start(f"worker{n}", [sys.executable, "-m", "services.gateway.worker"], env)
    for n in (1, 2):
        wait_until(
            lambda n=n: _answers(f"http://127.0.0.1:{ports[f'gateway{n}']}/healthz"), 120, f"gateway{n}"
        )
    wait_until(lambda: _answers(f"{dept.url}/healthz"), 30, "proxy")


@pytest.fixture(scope="module")
def department(tmp_path_factory: pytest.TempPathFactory, converted_model: Path) -> Iterator[Department]:
    if not Path(HAPROXY).exists():
        pytest.skip("HAProxy is not installed: `make scale-out` installs Debian's haproxy")
    smtp = SmtpCapture(port=free_port())
    controller = Controller(smtp, hostname=smtp.host, port=smtp.port)
    controller.start()
    root = tmp_path_factory.mktemp("department")
    with running_fake_calcom() as calcom:
        base = {k: v for k, v in os.environ.items() if not k.startswith("INTAKE_")}
        dept = Department(root, base, smtp, calcom)
        dept.base_env = {
            **base,
            "ANONYMIZED_TELEMETRY": "False",
            "INTAKE_CORPUS_DIR": str(TEST_CORPUS),
            "INTAKE_CALCOM_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "INTAKE_SMTP_HOST": smtp.host,
            "INTAKE_SMTP_PORT": str(smtp.port),
            "INTAKE_CALCOM_API_URL": calcom.url,
            "INTAKE_CALCOM_API_KEY": calcom.api_key,
            "INTAKE_SESSION_SECRET": "department-session-secret",
            # every request reaches the gateways from the proxy's address: per-client limits would be
            # one shared budget (see README, department deployment)
            "INTAKE_RATE_LIMIT_CHAT_PER_CLIENT": "0",
            "INTAKE_RATE_LIMIT_WEBHOOK_PER_CLIENT": "0",
        }
        ports = dept.ports
        ports.update(redis=free_port(), chroma=free_port(), proxy_inference=free_port())
        dept.base_env.update(
            INTAKE_REDIS_URL=f"redis://127.0.0.1:{ports['redis']}/0",
            INTAKE_CHROMA_URL=f"http://127.0.0.1:{ports['chroma']}",
            INTAKE_INFERENCE_URL=f"http://127.0.0.1:{ports['proxy_inference']}/v1",
        )
        try:
            _bring_up(dept, converted_model)
            yield dept
        finally:
            dept.stop_all()
            controller.stop()


# --- the journey ------------------------------------------------------------------------------------


@dataclass
class Walk:
    uid: str
    booking_id: int
    email: str
    token: str = ""
    sent: list[str] = field(default_factory=list)
    final: str = ""


def _invite_token(dept: Department, email: str) -> str:
    wait_until(lambda: bool(dept.smtp.to(email)), 120, f"invitation to {email}", interval=0.5)
    match = re.search(r"/i/([A-Za-z0-9_-]{22,})", dept.smtp.to(email)[0].get_body(("plain",)).get_content())
    assert match, "the invitation carries the chat link"
    return match.group(1)


def _summaries_for(dept: Department, uid: str) -> int:
    count = 0
    for mail in dept.smtp.to(h.ORGANIZER["email"]):
        for part in mail.iter_attachments():
            if part.get_filename() == "summary.json" and json.loads(part.get_content())["booking_uid"] == uid:
                count += 1
    return count


def test_two_gateways_two_workers_behind_haproxy(department: Department) -> None:
    """Students book and chat through HAProxy; after their second answer one gateway and one inference
    server are killed; every student still finishes, and each invitation, turn, summary email and Cal.com
    note exists exactly once; both gateways, both workers and both inference servers did work."""
    dept = department
    walks = [Walk(f"dept-{n}", 81000 + n, f"dept.student{n}@student.example.edu") for n in range(STUDENTS)]
    half_way = threading.Barrier(STUDENTS + 1, timeout=600)
    resumed = threading.Barrier(STUDENTS + 1, timeout=600)

    def walk(w: Walk) -> None:
        dept.calcom.add_booking(w.booking_id, description="Stuck on lab 3")
        payload = h.booking(w.uid, w.booking_id, {"name": f"Student {w.uid}", "email": w.email})
        response = h.post_webhook(dept.url, "BOOKING_CREATED", payload)
        assert response.status_code == 200 and response.json()["status"] == "created", response.text
        w.token = _invite_token(dept, w.email)
        with httpx.Client(base_url=dept.url, timeout=300) as client:
            h.consent(client, w.token)
            for n, line in enumerate(h.LINES):
                if n == TURNS_BEFORE_FAULT:
                    half_way.wait()
                    resumed.wait()
                turn = h.resend_until_answered(client, w.token, line, str(uuid.uuid4()), within_s=300)
                w.sent.append(line)
                assert turn.done is not None
                if turn.done["status"] != "active":
                    w.final = turn.done["status"]
                    break
            h.assert_each_stored_once(client, w.token, w.sent)

    with ThreadPoolExecutor(max_workers=STUDENTS) as pool:
        futures = [pool.submit(walk, w) for w in walks]
        half_way.wait()
        dept.programs["gateway1"].kill()
        dept.programs["model1"].kill()
        resumed.wait()
        for future in futures:
            future.result()

    assert all(w.final == "complete" for w in walks), [(w.uid, w.final) for w in walks]
    for w in walks:
        wait_until(lambda w=w: _summaries_for(dept, w.uid) >= 1, 600, f"summary of {w.uid}", interval=2)
        wait_until(
            lambda w=w: len(dept.calcom.patches(w.booking_id)) >= 1, 120, f"note of {w.uid}", interval=1
        )
    time.sleep(5)  # a doubled job would land now
    for w in walks:
        assert len(dept.smtp.to(w.email)) == 1, f"invitations to {w.email}"
        assert _summaries_for(dept, w.uid) == 1, f"summary emails for {w.uid}"
        assert len(dept.calcom.patches(w.booking_id)) == 1, f"Cal.com notes for {w.uid}"
    logs = {name: p.text() for name, p in dept.programs.items()}
    for gateway in ("gateway1", "gateway2"):
        assert '"turn_answered"' in logs[gateway], f"{gateway} answered no turn"
    assert '"job_delivered"' in logs["worker1"] and '"job_delivered"' in logs["worker2"]
    for model in ("model1", "model2"):
        assert "POST /v1/chat/completions" in logs[model], f"{model} got no model call"
