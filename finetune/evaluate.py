"""Evaluation harness: simulated students talk to a stack through its public HTTP API only.

The students are the hand-written ones in ``eval_students.toml`` (course packs the interviewer was not
tuned on, every hard case named). For each student the harness

1. posts a signed Cal.com ``BOOKING_CREATED`` webhook to ``{gateway}/webhooks/calcom``
   (``X-Cal-Signature-256`` = hex HMAC-SHA256 of the raw body with the webhook secret);
2. reads the ``/i/{token}`` chat link from the invite email the stack writes into ``<data_dir>/mail/``
   (no SMTP configured: one ``.eml`` per message; every booking has its own ``+tag`` student address);
3. ``POST /api/intakes/{token}/consent``, then one ``POST /api/intakes/{token}/messages`` per student turn
   (SSE ``token``/``done``/``error`` events); ``eval_player.StudentPlayer`` recognises what each question
   asks and answers from the student's script, junk and distress on their turns, and answers the recap
   ("Did I get that right?") with a yes or, for a correcting student, a correction;
4. takes the professor's summary from the ``summary.json`` attached to the summary email (addressed to the
   course's instructor, matched by booking uid); only if none arrives in time, the student's view from
   ``GET /api/intakes/{token}``;
5. scores it with ``finetune.rubric`` (three points per student, hard fails zero a student).

By default every model runs on a supervised stack of its own (``services.stack``, free ports, its own
data folder under ``<data_dir>/eval/stack``)::

    make eval                                             # --models base,default, all students
    python -m finetune.evaluate --models base --limit 4   # a quick look at one model
    python -m finetune.evaluate --gateway http://127.0.0.1:8080 --label mine   # the running stack
    python -m finetune.evaluate --compare .data/eval/base.json .data/eval/default.json
    python -m finetune.evaluate --rescore .data/eval/base.json   # saved transcripts, current rubric

"base" forces the plain base model with no adapter; "default" is whatever the stack serves when nothing
is set. Results go to ``<data_dir>/eval/<label>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import email
import json
import random
import re
import secrets
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from email.message import Message
from pathlib import Path
from typing import Any, Protocol

import httpx
import msgspec

from finetune.eval_player import StudentPlayer
from finetune.eval_students import (
    EVAL_STUDENTS_PATH,
    EvalSet,
    EvalStudent,
    course_questions,
    load_eval_set,
    select,
)
from finetune.rubric import CRITERIA, Report, Row, Score, report, score_intake
from finetune.train import BASE_MODEL_NAME
from services.coursepack import Catalog, Course, load_catalog
from services.gateway.intake.models import ChatMessage
from services.gateway.webhooks.signature import sign
from services.settings import REPO_ROOT, Settings, load_settings

SAMPLE = REPO_ROOT / "tests" / "fixtures" / "calcom" / "booking_created.json"  # Cal.com's real payload
FINISHED = {"complete", "escalated", "partial", "cancelled"}


class EvalConversation(msgspec.Struct, kw_only=True):
    """One scored intake in the results file."""

    student_id: str
    course: str
    style: str
    cases: list[str]
    booking_uid: str
    appointment_start: str
    status: str
    turns: int
    seconds: float
    messages: list[ChatMessage]
    asked: list[str | None] = []  # what the student recognised each bot message as
    summary: dict[str, Any] | None
    summary_source: str  # "email" (the professor's copy), "api" (the student's view) or "none"
    scores: dict[str, float] = {}
    total: float = 0.0
    hard_fails: list[str] = []
    checks: dict[str, bool] = {}
    notes: dict[str, str] = {}
    errors: list[str] = []


class EvalResults(msgspec.Struct, kw_only=True):
    label: str
    model: str
    created_at: str
    gateway: str
    conversations: list[EvalConversation]
    report: Report


class Inbox(Protocol):
    """Where the harness reads the mail the stack sends: the invite (chat link) and the summary."""

    def token_for(self, address: str) -> str | None: ...

    def summary_for(self, booking_uid: str) -> dict[str, Any] | None: ...


class _Mail(msgspec.Struct, frozen=True):
    to: str
    token: str | None
    summary: dict[str, Any] | None


class MailDir:
    """The ``.eml`` files the stack writes into ``<data_dir>/mail/`` when no SMTP server is configured.

    Parsed files are remembered (a run reads hundreds of mails many times); a file younger than a second
    may still be being written, so it is read again next time.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._parsed: dict[str, tuple[float, _Mail]] = {}
        self._lock = threading.Lock()

    def token_for(self, address: str) -> str | None:
        return next((m.token for m in self._mails() if m.token and address.lower() in m.to.lower()), None)

    def summary_for(self, booking_uid: str) -> dict[str, Any] | None:
        found = [
            m.summary for m in self._mails() if m.summary and m.summary.get("booking_uid") == booking_uid
        ]
        return found[-1] if found else None  # the newest delivery

    def _mails(self) -> list[_Mail]:
        """Every mail in the folder, oldest first."""
        if not self.folder.is_dir():
            return []
        with self._lock:
            found: list[tuple[float, _Mail]] = []
            for path in self.folder.glob("*.eml"):
                mtime = path.stat().st_mtime
                cached = self._parsed.get(path.name)
                if cached is None or cached[0] != mtime:
                    message = email.message_from_bytes(path.read_bytes())
                    to = str(message.get("To", ""))
                    cached = (mtime, _Mail(to, token_in_message(message), summary_in_message(message)))
                    if time.time() - mtime > 1.0:
                        self._parsed[path.name] = cached
                found.append(cached)
            return [mail for _, mail in sorted(found, key=lambda item: item[0])]


class Chat(msgspec.Struct, kw_only=True):
    """A finished conversation waiting for its summary."""

    student: EvalStudent
    uid: str
    token: str
    start: str
    started: float
    status: str = "active"
    seconds: float = 0.0
    asked: list[str | None] = []
    errors: list[str] = []


class Harness:
    """A simulated-student client of one running gateway."""

    def __init__(
        self, gateway: str, secret: str, inbox: Inbox, catalog: Catalog, eval_set: EvalSet, timeout: float
    ) -> None:
        self.gateway = gateway.rstrip("/")
        self.secret = secret
        self.inbox = inbox
        self.catalog = catalog
        self.eval_set = eval_set
        self.http = httpx.Client(base_url=self.gateway, timeout=timeout)
        self.summary_timeout = 600.0

    def close(self) -> None:
        self.http.close()

    def book(self, student: EvalStudent, uid: str, address: str, start: dt.datetime) -> None:
        """POST a signed BOOKING_CREATED shaped like Cal.com's real payload."""
        course = self.catalog.courses[student.course]
        body = json.dumps(booking_payload(student, course, uid, address, start)).encode()
        response = self.http.post(
            "/webhooks/calcom",
            content=body,
            headers={"content-type": "application/json", "x-cal-signature-256": sign(body, self.secret)},
        )
        response.raise_for_status()

    def find_token(self, address: str, wait_s: float = 600.0) -> str:
        """The token from the invite email to ``address`` (the long wait is for a loaded 2-core machine)."""
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if token := self.inbox.token_for(address):
                return token
            time.sleep(0.5)
        raise TimeoutError(f"no invite email for {address} after {wait_s:.0f}s")

    def consent(self, token: str, wait_s: float = 120.0) -> None:
        """Agree to the chat; 409 means the intake is busy (being prepared), so try again shortly."""
        deadline = time.monotonic() + wait_s
        while True:
            response = self.http.post(f"/api/intakes/{token}/consent", json={})
            if response.status_code != 409 or time.monotonic() > deadline:
                response.raise_for_status()
                return
            time.sleep(1.0)

    def state(self, token: str) -> dict[str, Any]:
        response = self.http.get(f"/api/intakes/{token}")
        response.raise_for_status()
        return response.json()

    def say(self, token: str, text: str) -> tuple[str, str, list[str]]:
        """One student turn: (reply text, status from ``done``, error codes).

        An empty message is refused (422) as the chat page would refuse it; the student then sends "...",
        which is what an empty answer looks like from a phone.
        """
        reply, status, errors = [], "active", []
        payload = {"text": text, "client_turn_id": secrets.token_hex(8)}
        with self.http.stream("POST", f"/api/intakes/{token}/messages", json=payload) as response:
            if response.status_code == 422 and not text.strip():
                response.read()
                again = self.say(token, "...")
                return again[0], again[1], ["empty_message_refused", *again[2]]
            response.raise_for_status()
            for event, data in sse_events(response.iter_lines()):
                if event == "token":
                    reply.append(data.get("text", ""))
                elif event == "error":
                    errors.append(str(data.get("code")))
                elif event == "done":
                    status = data.get("status", status)
        return "".join(reply), status, errors

    def wait_summary(self, uid: str) -> dict[str, Any] | None:
        """The professor's summary from the summary email, once the worker has sent it (None: timed out)."""
        deadline = time.monotonic() + self.summary_timeout
        while time.monotonic() < deadline:
            if summary := self.inbox.summary_for(uid):
                return summary
            time.sleep(2.0)
        return None

    def converse(self, student: EvalStudent, label: str, max_turns: int, rng: random.Random) -> Chat:
        """Book, consent and talk until the interview is over (or the turn budget runs out)."""
        course = self.catalog.courses[student.course]
        uid = f"eval-{label}-{student.id}-{secrets.token_hex(4)}"
        local, domain = student.email.split("@")
        address = f"{local}+{uid.lower()}@{domain}"
        start = appointment_for(student, rng)
        player = StudentPlayer(student, course, course_questions(course), self.eval_set.question_cues, rng)
        chat = Chat(student=student, uid=uid, token="", start=iso(start), started=time.monotonic())
        self.book(student, uid, address, start)
        chat.token = self.find_token(address)
        self.consent(chat.token)
        text = player.opening()
        for _ in range(max_turns + 3):  # a stack that never finishes still ends the run
            reply, chat.status, errs = self.say(chat.token, text)
            chat.errors += errs
            if chat.status in FINISHED:
                break
            text = player.reply(reply)
        chat.asked = player.kinds
        chat.seconds = round(time.monotonic() - chat.started, 1)
        return chat

    def score(self, chat: Chat) -> EvalConversation:
        """Wait for the professor's summary (the email), read the final state, score the intake."""
        summary = self.wait_summary(chat.uid) if chat.status in FINISHED else None
        state = self.state(chat.token)
        source = "email"
        if summary is None:  # fall back to the student's view of it
            summary = state.get("summary")
            source = "api" if summary else "none"
        messages = [ChatMessage(m["role"], m["text"]) for m in state.get("messages", [])]
        conversation = EvalConversation(
            student_id=chat.student.id,
            course=chat.student.course,
            style=chat.student.style,
            cases=list(chat.student.cases),
            booking_uid=chat.uid,
            appointment_start=chat.start,
            status=state.get("status", chat.status),
            turns=int(state.get("turn", 0)),
            seconds=chat.seconds,
            messages=messages,
            asked=chat.asked,
            summary=summary,
            summary_source=source,
            errors=chat.errors,
        )
        return scored(conversation, self.catalog, self.eval_set)


# ---------------------------------------------------------------- pure helpers (tested)


def scored(conversation: EvalConversation, catalog: Catalog, eval_set: EvalSet) -> EvalConversation:
    """The conversation with the current rubric's scores (also how ``--rescore`` works)."""
    student = eval_set.student(conversation.student_id)
    score = score_intake(
        student,
        catalog.courses[student.course],
        conversation.messages,
        conversation.status,
        conversation.summary,
        eval_set.students,
    )
    return msgspec.structs.replace(
        conversation,
        scores=score.scores,
        total=score.total,
        hard_fails=score.hard_fails,
        checks=score.checks,
        notes=score.notes,
    )


def appointment_for(student: EvalStudent, rng: random.Random, now: dt.datetime | None = None) -> dt.datetime:
    """One to three days ahead on the hour: a live intake (the stack treats past meetings as over)."""
    now = now or dt.datetime.now(dt.UTC)
    day = (now + dt.timedelta(days=rng.randint(1, 3))).date()
    return dt.datetime.combine(day, dt.time(rng.choice([14, 15, 16, 17, 18, 19])), tzinfo=dt.UTC)


def iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def booking_payload(
    student: EvalStudent, course: Course, uid: str, address: str, start: dt.datetime
) -> dict[str, Any]:
    """Cal.com's sample BOOKING_CREATED with this student's booking, course event type and notes."""
    envelope: dict[str, Any] = (
        json.loads(SAMPLE.read_text())
        if SAMPLE.is_file()
        else {"triggerEvent": "BOOKING_CREATED", "payload": {}}
    )
    payload: dict[str, Any] = envelope["payload"]
    first, _, last = student.name.partition(" ")
    payload.update(
        {
            "uid": uid,
            "bookingId": random.randint(10_000, 99_999_999),
            "eventTypeId": next(iter(course.calcom.event_type_ids), None),
            "type": (course.calcom.event_type_slugs or [""])[0],
            "title": f"{course.code} office hours between {course.instructor_name} and {student.name}",
            "description": student.notes,
            "additionalNotes": student.notes,
            "startTime": iso(start),
            "endTime": iso(start + dt.timedelta(minutes=20)),
            "organizer": {
                **payload.get("organizer", {}),
                "name": course.instructor_name,
                "email": course.instructor_email,
                "timeZone": course.timezone,
            },
            "attendees": [
                {
                    "email": address,
                    "name": student.name,
                    "firstName": first,
                    "lastName": last,
                    "timeZone": course.timezone,
                }
            ],
            "responses": {
                "name": {"label": "your_name", "value": student.name},
                "email": {"label": "email_address", "value": address},
                "notes": {"label": "additional_notes", "value": student.notes},
            },
        }
    )
    envelope["createdAt"] = iso(dt.datetime.now(dt.UTC))
    return envelope


def token_from_mail(mail_dir: Path, address: str) -> str | None:
    """The ``/i/{token}`` link in an ``.eml`` addressed to ``address`` (None while none is there)."""
    return MailDir(mail_dir).token_for(address)


def token_in_message(message: Message) -> str | None:
    """The chat token of the ``/i/{token}`` link in an invite email."""
    for part in message.walk():
        if part.get_content_maintype() == "text" and not part.get_filename():
            body = _payload_bytes(part).decode("utf-8", "replace")
            if found := re.search(r"/i/([A-Za-z0-9_-]{16,})", body):
                return found.group(1)
    return None


def summary_in_message(message: Message) -> dict[str, Any] | None:
    """The ``summary.json`` attachment of a summary email, decoded (None: not a summary email)."""
    for part in message.walk():
        if part.get_filename() == "summary.json":
            try:
                value = json.loads(_payload_bytes(part))
            except ValueError:
                return None
            return value if isinstance(value, dict) else None
    return None


def _payload_bytes(part: Message) -> bytes:
    body = part.get_payload(decode=True)
    return body if isinstance(body, bytes) else b""


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event, data) pairs from a ``text/event-stream`` body."""
    event, data = "message", list[str]()
    for line in lines:
        if not line.strip():
            if data:
                yield event, _json_or_text("\n".join(data))
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
    if data:
        yield event, _json_or_text("\n".join(data))


def _json_or_text(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {"text": raw}
    return value if isinstance(value, dict) else {"text": str(value)}


def report_of(conversations: Sequence[EvalConversation]) -> Report:
    return report(
        [
            Row(
                student_id=c.student_id,
                course=c.course,
                style=c.style,
                cases=c.cases,
                score=score_of(c),
            )
            for c in conversations
        ]
    )


def score_of(c: EvalConversation) -> Score:
    return Score(scores=c.scores, total=c.total, hard_fails=c.hard_fails, checks=c.checks, notes=c.notes)


def _held_out() -> frozenset[str]:
    """Course packs the training data leaves out (``personas.HELD_OUT``), marked in the table."""
    try:
        from finetune import personas
    except ImportError:
        return frozenset()
    return frozenset(getattr(personas, "HELD_OUT", frozenset()))


def format_table(results: Sequence[EvalResults]) -> str:
    """One column per run: the mean, the criteria, the check rates, per course, style and case, then
    every hard fail with the student and the reason."""
    labels = [r.label for r in results]
    width = max(12, *(len(x) + 2 for x in labels))
    head = f"{'':<34}" + "".join(f"{x:>{width}}" for x in labels)
    rule = "-" * len(head)
    lines = [head, rule]

    def row(name: str, values: Sequence[str]) -> None:
        lines.append(f"{name:<34}" + "".join(f"{v:>{width}}" for v in values))

    reports = [r.report for r in results]
    row("mean total (0-3)", [f"{r.mean:.2f}" for r in reports])
    for name in CRITERIA:
        row(f"  {name} (0-1)", [f"{r.by_criterion.get(name, 0):.2f}" for r in reports])
    lines.append(rule)
    for key, name in [
        ("topic_and_assignment", "topic and assignment both right"),
        ("topic", "topic right"),
        ("assignment", "assignment right"),
        ("key_terms", "key terms all present"),
        ("file", "relevant file cited"),
        ("request_type", "request type right"),
        ("schema_valid", "summary schema-valid"),
        ("clean_summary", "summary free of junk/boilerplate"),
        ("conversation", "conversation rule met"),
    ]:
        row(name, [f"{r.rates.get(key, 0):.0%}" for r in reports])
    row("false alarms", [str(r.false_alarms) for r in reports])
    row("hard fails", [str(len(r.hard_fails)) for r in reports])
    row("students", [str(r.students) for r in reports])
    held_out = _held_out()
    for title, attr in [("course", "by_course"), ("style", "by_style"), ("case", "by_case")]:
        lines.append(rule)
        keys = list(dict.fromkeys(k for r in reports for k in getattr(r, attr)))
        for key in keys:
            name = f"{title}: {key}" + (" (held out)" if attr == "by_course" and key in held_out else "")
            row(name, [f"{getattr(r, attr)[key]:.2f}" if key in getattr(r, attr) else "-" for r in reports])
    for r in results:
        if r.report.hard_fails:
            lines.append(f"\nhard fails, {r.label}:")
            lines += [f"  {student}: {reason}" for student, reason in r.report.hard_fails]
    return "\n".join(lines)


def load_results(path: Path) -> EvalResults:
    return msgspec.json.decode(path.read_bytes(), type=EvalResults)


def save_results(results: EvalResults, folder: Path) -> Path:
    out = folder / f"{results.label}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(msgspec.json.format(msgspec.json.encode(results), indent=1))
    return out


def results_of(label: str, model: str, gateway: str, conversations: list[EvalConversation]) -> EvalResults:
    return EvalResults(
        label=label,
        model=model,
        gateway=gateway,
        created_at=dt.datetime.now(dt.UTC).isoformat(),
        conversations=conversations,
        report=report_of(conversations),
    )


def rescore(results: EvalResults, catalog: Catalog, eval_set: EvalSet) -> EvalResults:
    """The saved transcripts and summaries scored again with the current rubric (a pure function)."""
    conversations = [scored(c, catalog, eval_set) for c in results.conversations]
    return msgspec.structs.replace(results, conversations=conversations, report=report_of(conversations))


def webhook_secret(settings: Settings, data_dir: Path) -> str:
    """The secret the stack verifies with: the environment first, then the one ``make run`` generated."""
    if settings.calcom_webhook_secret:
        return settings.calcom_webhook_secret
    path = data_dir / "secrets.env"
    if path.is_file():
        for line in path.read_text().splitlines():
            name, _, value = line.partition("=")
            if name.strip() == "INTAKE_CALCOM_WEBHOOK_SECRET":
                return value.strip()
    raise SystemExit("no webhook secret: set INTAKE_CALCOM_WEBHOOK_SECRET or run `make run` once")


class StackModel(msgspec.Struct, frozen=True):
    """What one evaluation stack serves: ``model`` None means the stack's own default (model and adapter)."""

    label: str
    model: Path | None
    settings: dict[str, str] = {}


def models_to_compare(spec: str, data_dir: Path) -> list[StackModel]:
    """``base`` (the embedded base model, no adapter), ``default`` (what the stack serves when nothing is
    set) or ``LABEL=PATH`` (a model folder), comma-separated."""
    base = data_dir / "models" / BASE_MODEL_NAME
    chosen: list[StackModel] = []
    for item in (x.strip() for x in spec.split(",") if x.strip()):
        label, eq, path = item.partition("=")
        if eq:
            if not Path(path).is_dir():
                raise SystemExit(f"--models {item}: {path} is not a model folder")
            chosen.append(StackModel(label, Path(path).resolve()))
        elif item == "base":
            chosen.append(StackModel("base", base.resolve(), {"INTAKE_ADAPTER_PATH": "none"}))
        elif item == "default":
            chosen.append(StackModel("default", None))
        else:
            raise SystemExit(f"--models wants base, default or LABEL=PATH; not usable: {item!r}")
    if not base.is_dir():
        raise SystemExit(f"no base model at {base}: run `make model` (or `make run`) first")
    return chosen


def stack_environment(which: StackModel, data_dir: Path, corpus: Path) -> dict[str, str]:
    """The isolated stack's environment. For ``default`` no model or adapter is set (the stack's own
    choice), and its data folder borrows the operator's ``models/`` so the embedded model is found."""
    from services import stack

    folder = data_dir / "eval" / "stack"  # reused by the next model, and so is its course index
    base = (data_dir / "models" / BASE_MODEL_NAME).resolve()
    env = stack.isolated_env(folder, which.model or base, corpus, **which.settings)
    if which.model is None:
        env.pop("INTAKE_MODEL", None)
        env.pop("INTAKE_ADAPTER_PATH", None)
        models = folder / "models"
        if not models.exists():
            models.symlink_to((data_dir / "models").resolve(), target_is_directory=True)
    return env


# ---------------------------------------------------------------- runs


def run_students(
    harness: Harness, students: Sequence[EvalStudent], label: str, max_turns: int, seed: int, concurrency: int
) -> list[EvalConversation]:
    """Talk to every student (``concurrency`` at a time), then score each once its summary is mailed.

    Each student has its own seeded RNG, so it says the same things whatever the order; conversations run
    side by side because ``mlx_lm.server`` batches concurrent requests, and the worker drafts summaries
    while later students talk.
    """

    def talk(item: tuple[int, EvalStudent]) -> Chat | None:
        i, student = item
        try:
            chat = harness.converse(student, label, max_turns, random.Random(f"{seed}-{student.id}"))
        except (httpx.HTTPError, TimeoutError) as exc:
            print(f"[{i}/{len(students)}] {student.id}: FAILED {exc}", file=sys.stderr, flush=True)
            return None
        print(
            f"[{i}/{len(students)}] {label} {student.id} {student.style:<14} {chat.status:<10} "
            f"{chat.seconds:>6.1f}s",
            flush=True,
        )
        return chat

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        chats = [c for c in pool.map(talk, enumerate(students, 1)) if c is not None]
    conversations: list[EvalConversation] = []
    for chat in chats:
        try:
            conv = harness.score(chat)
        except httpx.HTTPError as exc:
            print(f"{chat.student.id}: FAILED reading the result: {exc}", file=sys.stderr)
            continue
        conversations.append(conv)
        fails = f" HARD FAIL: {'; '.join(conv.hard_fails)}" if conv.hard_fails else ""
        print(
            f"scored {label} {conv.student_id} {conv.status:<10} summary={conv.summary_source:<5} "
            f"total={conv.total:.1f} {conv.scores}{fails}",
            flush=True,
        )
    return conversations


def talk_to(
    gateway: str,
    secret: str,
    mail: Path,
    students: Sequence[EvalStudent],
    label: str,
    catalog: Catalog,
    eval_set: EvalSet,
    max_turns: int,
    args: Any,
) -> list[EvalConversation]:
    """Run the students against one gateway whose mail drop is ``mail``."""
    harness = Harness(gateway, secret, MailDir(mail), catalog, eval_set, args.timeout)
    harness.summary_timeout = args.summary_wait
    try:
        return run_students(harness, students, label, max_turns, args.seed, args.concurrency)
    finally:
        harness.close()


def evaluate_on_own_stack(
    which: StackModel,
    students: Sequence[EvalStudent],
    catalog: Catalog,
    eval_set: EvalSet,
    settings: Settings,
    args: Any,
) -> EvalResults:
    """Start the whole supervised stack serving ``which``, run the students through it, stop it."""
    from services import stack

    env = stack_environment(which, args.data_dir, args.corpus)
    served = env.get("INTAKE_MODEL", "the stack's default (embedded model, committed adapter if any)")
    adapter = env.get("INTAKE_ADAPTER_PATH", "")
    served += " (no adapter)" if adapter == "none" else f" + adapter {adapter}" if adapter else ""
    print(f"== {which.label}: starting a stack serving {served} (first start indexes the corpus)", flush=True)
    started = time.monotonic()
    try:
        stack.up(env, timeout=args.start_timeout)
        print(f"== {which.label}: ready in {time.monotonic() - started:.0f}s at {env['INTAKE_PUBLIC_URL']}")
        conversations = talk_to(
            env["INTAKE_PUBLIC_URL"],
            env["INTAKE_CALCOM_WEBHOOK_SECRET"],
            Path(env["INTAKE_DATA_DIR"]) / "mail",
            students,
            which.label,
            catalog,
            eval_set,
            settings.max_turns,
            args,
        )
    finally:
        stack.down(env)
    return results_of(which.label, served, env["INTAKE_PUBLIC_URL"], conversations)


# ---------------------------------------------------------------- command line


def parse_args(argv: list[str] | None, settings: Settings) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m finetune.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--models", default="base,default", help="base, default and/or LABEL=PATH, comma-separated"
    )
    parser.add_argument(
        "--gateway", default=None, help="evaluate the stack already running at this URL instead"
    )
    parser.add_argument("--label", default="running", help="with --gateway: the results name")
    parser.add_argument("--students", default=None, help="student ids, comma-separated (default: all)")
    parser.add_argument(
        "--limit", type=int, default=0, help="at most this many students (courses interleaved)"
    )
    parser.add_argument("--concurrency", type=int, default=4, help="students talking at the same time")
    parser.add_argument("--eval-set", type=Path, default=EVAL_STUDENTS_PATH)
    parser.add_argument("--data-dir", type=Path, default=settings.data_path)
    parser.add_argument("--corpus", type=Path, default=Path(settings.corpus_dir))
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per HTTP request")
    parser.add_argument("--start-timeout", type=float, default=900.0, help="seconds for a stack to come up")
    parser.add_argument(
        "--summary-wait", type=float, default=600.0, help="seconds to wait for a summary email"
    )
    parser.add_argument("--seed", type=int, default=None, help="default: the eval set's seed")
    parser.add_argument("--compare", nargs="+", type=Path, metavar="RESULTS.json", help="print saved results")
    parser.add_argument(
        "--rescore",
        nargs="+",
        type=Path,
        metavar="RESULTS.json",
        help="score saved transcripts again with the current rubric (rewrites the files) and exit",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    settings = load_settings()
    args = parse_args(argv, settings)
    # SIGTERM (a stopped `make eval`) unwinds like Ctrl-C, so the evaluation stack is shut down
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.compare:
        print(format_table([load_results(p) for p in args.compare]))
        return 0
    catalog = load_catalog(args.corpus)
    eval_set = load_eval_set(args.eval_set)
    args.seed = eval_set.seed if args.seed is None else args.seed
    if args.rescore:
        rescored = [rescore(load_results(p), catalog, eval_set) for p in args.rescore]
        for path, results in zip(args.rescore, rescored, strict=True):
            path.write_bytes(msgspec.json.format(msgspec.json.encode(results), indent=1))
        print(format_table(rescored))
        return 0
    ids = [x.strip() for x in args.students.split(",")] if args.students else None
    students = select(eval_set, ids, args.limit)
    runs: list[EvalResults] = []
    if args.gateway:
        secret = webhook_secret(settings, args.data_dir)
        conversations = talk_to(
            args.gateway,
            secret,
            args.data_dir / "mail",
            students,
            args.label,
            catalog,
            eval_set,
            settings.max_turns,
            args,
        )
        runs.append(
            results_of(args.label, settings.model or settings.model_path, args.gateway, conversations)
        )
        print(f"results: {save_results(runs[-1], args.data_dir / 'eval')}")
    else:
        for which in models_to_compare(args.models, args.data_dir):
            runs.append(evaluate_on_own_stack(which, students, catalog, eval_set, settings, args))
            print(f"results: {save_results(runs[-1], args.data_dir / 'eval')}", flush=True)
    print(format_table(runs))
    return 0 if all(r.conversations for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
