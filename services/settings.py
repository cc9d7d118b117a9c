"""One typed settings object for every process, built from ``INTAKE_*`` environment variables.

Bad configuration fails at start-up with a message naming the variable; tests build ``Settings`` directly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import msgspec
from msgspec import Meta

Port = Annotated[int, Meta(ge=1, le=65535)]
PositiveInt = Annotated[int, Meta(ge=1)]

PREFIX = "INTAKE_"
REPO_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Every knob of the stack. Field ``foo_bar`` is read from ``INTAKE_FOO_BAR``."""

    public_url: str = "http://127.0.0.1:8080"
    host: str = "127.0.0.1"
    port: Port = 8080
    data_dir: str = str(REPO_ROOT / ".data")
    corpus_dir: str = str(REPO_ROOT / "corpus")
    log_level: str = "INFO"

    redis_url: str = "redis://127.0.0.1:6390/0"
    redis_port: Port = 6390
    chroma_url: str = "http://127.0.0.1:8082"
    chroma_port: Port = 8082

    inference_url: str = "http://127.0.0.1:8081/v1"
    inference_port: Port = 8081
    model: str = ""  # empty: the embedded default model built into the data folder
    model_name: str = "default_model"  # the name clients send to mlx_lm.server
    # "auto": the committed LoRA adapter (finetune/adapter) when serving the embedded model; "none": no
    # adapter; else an adapter folder (services/inference/server.py ``adapter_for``)
    adapter_path: str = "auto"
    inference_timeout_s: Annotated[float, Meta(gt=0)] = 60.0
    # the model's name in call records and assessments; empty: the model folder's name (+ the adapter's)
    model_id: str = ""
    # comparing models on real traffic: a share (0-1) of new intakes goes to a second OpenAI-compatible
    # server, assigned once per intake from a hash of its token and kept for its whole conversation
    model_b_url: str = ""  # empty: no second model
    model_b_name: str = "default_model"  # the name sent to it
    model_b_id: str = ""  # its name in records; empty: "b:<host:port>/<name>"
    model_b_share: Annotated[float, Meta(ge=0, le=1)] = 0.0
    probe_timeout_s: Annotated[float, Meta(gt=0)] = 20.0

    calcom_webhook_secret: str = ""
    calcom_allow_unsigned: bool = False
    calcom_api_url: str = "https://api.cal.com"
    calcom_api_key: str = ""
    calcom_web_url: str = "https://app.cal.com"  # the booking pages students reschedule or cancel on

    smtp_host: str = ""  # empty: emails are written as .eml files into <data_dir>/mail
    smtp_port: Port = 25
    smtp_from: str = "office-hours@localhost"
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    smtp_timeout_s: Annotated[float, Meta(gt=0)] = 15.0
    calcom_timeout_s: Annotated[float, Meta(gt=0)] = 10.0

    # the delivery outbox (worker): attempts per channel, then the dead-letter list
    outbox_max_attempts: PositiveInt = 10
    outbox_backoff_base_s: Annotated[float, Meta(gt=0)] = 10.0
    outbox_backoff_max_s: Annotated[float, Meta(gt=0)] = 3600.0
    worker_poll_s: Annotated[float, Meta(gt=0)] = 1.0

    staff_password_hash: str = ""  # argon2 hash; empty disables the staff pages
    session_secret: str = ""  # signs staff cookies; generated per process when empty

    max_turns: Annotated[int, Meta(ge=5, le=8)] = 8
    min_turns: Annotated[int, Meta(ge=1, le=8)] = 5
    max_message_chars: PositiveInt = 2000
    max_webhook_bytes: PositiveInt = 256 * 1024
    retention_days: Annotated[int, Meta(ge=0)] = 30
    partial_before_meeting_s: Annotated[int, Meta(ge=0)] = 2 * 3600
    # a reminder email to a student who has not started the chat this long before the meeting (0: none)
    reminder_before_s: Annotated[int, Meta(ge=0)] = 24 * 3600
    reply_max_tokens: PositiveInt = 60
    summary_max_tokens: PositiveInt = 250

    cloudflared_token: str = ""

    # protection: requests per minute (0 switches a limit off); per intake link ("token") and per client
    # address (behind the tunnel: its CF-Connecting-IP). Chat covers consent, messages and rating.
    rate_limit_chat_per_token: Annotated[int, Meta(ge=0)] = 30
    rate_limit_chat_per_client: Annotated[int, Meta(ge=0)] = 600
    rate_limit_webhook_per_client: Annotated[int, Meta(ge=0)] = 1200
    rate_limit_login_per_client: Annotated[int, Meta(ge=0)] = 30
    readiness_cache_s: Annotated[float, Meta(ge=0)] = 5.0  # /readyz answers, failures too, are reused
    # the gateway's circuit breaker around the model: consecutive failures before it opens, and how long
    # it stays open before one trial call
    breaker_failures: PositiveInt = 3
    breaker_cooldown_s: Annotated[float, Meta(gt=0)] = 30.0
    # the line for the model (services/gateway/intake/queueing.py): generations at once across every gateway
    # (0: no line; 8 = what mlx_lm.server decodes at once here), and the longest wait in line before a turn
    # gets the policy's own question instead
    generation_slots: Annotated[int, Meta(ge=0)] = 8
    generation_wait_s: Annotated[float, Meta(gt=0)] = 90.0
    # the inference watchdog: a generation probe every interval; restart after this many failures in a row
    watchdog_interval_s: Annotated[float, Meta(gt=0)] = 30.0
    watchdog_failures: PositiveInt = 3
    watchdog_probe_timeout_s: Annotated[float, Meta(gt=0)] = 90.0
    watchdog_grace_s: Annotated[float, Meta(ge=0)] = 300.0

    # analytics (services/analytics): a host whose own reschedules exceed this share of their bookings is
    # flagged; the consumer folds up to ``analytics_batch`` events per round trip and takes over entries
    # another consumer left pending longer than ``analytics_claim_idle_s``; the hosts' weekly report runs
    # on ``analytics_report_cron`` (SAQ cron syntax, UTC)
    analytics_reschedule_threshold: Annotated[float, Meta(ge=0, le=1)] = 0.15
    analytics_batch: Annotated[int, Meta(ge=1, le=10_000)] = 500
    analytics_claim_idle_s: Annotated[float, Meta(gt=0)] = 10.0
    analytics_report_cron: str = "0 7 * * 1"

    # indexer: files above the cap are skipped with a warning; chunk sizes are MiniLM word pieces
    index_max_file_bytes: PositiveInt = 2 * 1024 * 1024
    index_chunk_tokens: Annotated[int, Meta(ge=32, le=240)] = 200
    index_chunk_overlap: Annotated[int, Meta(ge=0, le=100)] = 24

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def model_path(self) -> str:
        """The model mlx_lm.server loads: an explicit folder or hub id, else the embedded default."""
        return self.model or str(self.data_path / "models" / "smollm2-135m-instruct-f32")


_FIELD_TYPES: dict[str, Any] = {f.name: f.type for f in msgspec.structs.fields(Settings)}


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings from ``INTAKE_*`` variables, failing with the variable's name on a bad value."""
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    for name in _FIELD_TYPES:
        value = env.get(PREFIX + name.upper())
        if value is not None and value != "":
            raw[name] = value
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(_name_variable(str(exc), raw)) from None


def _name_variable(message: str, raw: Mapping[str, Any]) -> str:
    """Turn msgspec's ``... - at `$.port``` into a message that names ``INTAKE_PORT`` and its value."""
    if "`$." in message:
        field = message.rsplit("`$.", 1)[1].rstrip("`").split("[")[0].split(".")[0]
        return f"{PREFIX}{field.upper()}={raw.get(field)!r} is invalid: {message.split(' - at ')[0]}"
    return f"bad {PREFIX}* settings: {message}"
