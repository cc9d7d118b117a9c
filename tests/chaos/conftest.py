"""A whole stack of its own for the fault tests, with retries short enough to exhaust inside a test.

Like the session ``stack`` (every program under supervisord, the real model, fake Cal.com, a real SMTP
capture), plus: three attempts per delivery with 1-2 s backoff, short Cal.com and SMTP deadlines, and an
SMTP server the tests can take down and bring back on the same port.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from services import stack as stack_cli
from services.settings import load_settings
from tests.fakes.calcom import running_fake_calcom
from tests.fixtures.ports import free_port
from tests.fixtures.smtp import SmtpCapture
from tests.fixtures.stack import Stack, stack_environment

FAST_RETRIES = {
    "INTAKE_OUTBOX_MAX_ATTEMPTS": "3",
    "INTAKE_OUTBOX_BACKOFF_BASE_S": "1",
    "INTAKE_OUTBOX_BACKOFF_MAX_S": "2",
    "INTAKE_CALCOM_TIMEOUT_S": "2",
    "INTAKE_SMTP_TIMEOUT_S": "3",
    # every simulated client is 127.0.0.1
    "INTAKE_RATE_LIMIT_CHAT_PER_CLIENT": "100000",
    "INTAKE_RATE_LIMIT_WEBHOOK_PER_CLIENT": "100000",
}


@dataclass
class ChaosStack(Stack):
    """The stack, and its SMTP server as something a test can switch off and on."""

    controller: Controller | None = field(default=None)

    @property
    def data(self) -> Path:
        return Path(self.env["INTAKE_DATA_DIR"])

    def smtp_down(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def smtp_up(self) -> None:
        if self.controller is None:
            self.controller = Controller(self.smtp, hostname=self.smtp.host, port=self.smtp.port)
            self.controller.start()

    def staff_password(self) -> str:
        return (self.data / "staff-password").read_text().strip()


@pytest.fixture(scope="session")
def chaos_stack(tmp_path_factory: pytest.TempPathFactory, converted_model: Path) -> Iterator[ChaosStack]:
    """Started once for the fault tests; each test leaves it ready again."""
    smtp = SmtpCapture(port=free_port())
    with running_fake_calcom() as calcom:
        calcom.hang_s = 4.0  # past INTAKE_CALCOM_TIMEOUT_S
        env = stack_environment(tmp_path_factory.mktemp("chaos"), converted_model)
        env.update(
            INTAKE_SMTP_HOST=smtp.host,
            INTAKE_SMTP_PORT=str(smtp.port),
            INTAKE_CALCOM_API_URL=calcom.url,
            INTAKE_CALCOM_API_KEY=calcom.api_key,
            **FAST_RETRIES,
        )
        running = ChaosStack(env=env, settings=load_settings(env), calcom=calcom, smtp=smtp)
        running.smtp_up()
        try:
            stack_cli.up(env, timeout=300)
            yield running
        finally:
            stack_cli.down(env)
            running.smtp_down()
