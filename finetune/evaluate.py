"""Evaluation harness: held-out simulated students talk to the RUNNING stack through its public HTTP API.

For each test persona (the split's test set, never trained on) the harness
1. posts a signed Cal.com ``BOOKING_CREATED`` webhook to ``{gateway}/webhooks/calcom``
   (``X-Cal-Signature-256`` = hex HMAC-SHA256 of the raw body with ``INTAKE_CALCOM_WEBHOOK_SECRET``,
   read from the environment or ``<data_dir>/secrets.env`` as ``make run`` writes it);
2. finds the chat link the way a student does, in the invite email: with no SMTP configured the stack
   writes it as an ``.eml`` file into ``<data_dir>/mail/``; the harness gives every booking a unique
   ``+tag`` student address and reads the ``/i/{token}`` link from the matching file. (This is the
   least coupled route: it relies on the documented mail drop, not on Redis key names.);
3. ``POST /api/intakes/{token}/consent``, then one ``POST /api/intakes/{token}/messages`` per student
   turn (reading the SSE ``token``/``done``/``error`` events), answering each question in the persona's
   style until the interview is over;
4. polls ``GET /api/intakes/{token}`` until the summary is there, and scores the conversation with
   ``finetune.rubric``.

Results go to ``<data_dir>/eval/<label>.json``. Run once per served model, then compare::

    make run                                   # base model
    python -m finetune.evaluate --label base
    make stop && INTAKE_MODEL=.data/models/intake-finetuned make run
    python -m finetune.evaluate --label finetuned   # prints base vs finetuned when base.json exists
    python -m finetune.evaluate --compare .data/eval/base.json .data/eval/finetuned.json
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
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import httpx
import msgspec

from finetune.compose import SimulatedStudent, load_phrases, slot_of_question
from finetune.personas import STYLES, Persona, build_personas, load_matrix, urgency_for
from finetune.rubric import CRITERIA, score_conversation
from finetune.split import assign_splits
from finetune.train import BASE_MODEL_NAME, FUSED_NAME
from services.coursepack import Catalog, Course, load_catalog
from services.gateway.intake.models import ChatMessage
from services.gateway.webhooks.signature import sign
from services.settings import REPO_ROOT, Settings, load_settings

SAMPLE = REPO_ROOT / "tests" / "fixtures" / "calcom" / "booking_created.json"  # Cal.com's real payload
FINISHED = {"complete", "escalated", "partial", "cancelled"}


class EvalConversation(msgspec.Struct, kw_only=True):
    """One scored conversation in the results file."""

    persona_id: str
    style: str
    booking_uid: str
    status: str
    turns: int
    seconds: float
    messages: list[ChatMessage]
    summary: dict[str, Any] | None
    scores: dict[str, int]
    notes: dict[str, str]
    errors: list[str] = []


class EvalResults(msgspec.Struct, kw_only=True):
    label: str
    model: str
    created_at: str
    gateway: str
    conversations: list[EvalConversation]
    by_criterion: dict[str, float]
    by_style: dict[str, float]
    average: float


class Inbox(Protocol):
    """Where the harness reads the mail the stack sends: the invite (chat link) and the summary."""

    def token_for(self, address: str) -> str | None: ...

    def summary_sent(self, booking_uid: str) -> bool: ...


class MailDir:
    """The ``.eml`` files the stack writes into ``<data_dir>/mail/`` when no SMTP server is configured."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def token_for(self, address: str) -> str | None:
        return token_from_mail(self.folder, address)

    def summary_sent(self, booking_uid: str) -> bool:
        return summary_mailed(self.folder, booking_uid)


class Harness:
    """A simulated-student client of one running gateway."""

    def __init__(self, gateway: str, secret: str, inbox: Inbox, catalog: Catalog, timeout: float) -> None:
        self.gateway = gateway.rstrip("/")
        self.secret = secret
        self.inbox = inbox
        self.catalog = catalog
        self.http = httpx.Client(base_url=self.gateway, timeout=timeout)
        self.summary_timeout = max(timeout, 600.0)

    def close(self) -> None:
        self.http.close()

    def book(self, persona: Persona, uid: str, email_addr: str) -> None:
        """POST a signed BOOKING_CREATED shaped like Cal.com's real payload."""
        course = self.catalog.courses[persona.course_slug]
        body = json.dumps(booking_payload(persona, course, uid, email_addr)).encode()
        response = self.http.post(
            "/webhooks/calcom",
            content=body,
            headers={"content-type": "application/json", "x-cal-signature-256": sign(body, self.secret)},
        )
        response.raise_for_status()

    def find_token(self, email_addr: str, wait_s: float = 600.0) -> str:
        """The token from the invite email addressed to ``email_addr``.

        The worker sends it after preparing the interview, within seconds on a quiet machine; the long
        wait is for a loaded one (2 cores shared by the model, the indexer and 4 simulated students).
        """
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            token = self.inbox.token_for(email_addr)
            if token:
                return token
            time.sleep(0.5)
        raise TimeoutError(f"no invite email for {email_addr} after {wait_s:.0f}s")

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
        """One student turn: (reply text, status from ``done``, error codes)."""
        reply, status, errors = [], "active", []
        payload = {"text": text, "client_turn_id": secrets.token_hex(8)}
        with self.http.stream("POST", f"/api/intakes/{token}/messages", json=payload) as response:
            response.raise_for_status()
            for event, data in sse_events(response.iter_lines()):
                if event == "token":
                    reply.append(data.get("text", ""))
                elif event == "error":
                    errors.append(str(data.get("code")))
                elif event == "done":
                    status = data.get("status", status)
        return "".join(reply), status, errors

    def wait_summary(self, token: str, uid: str) -> dict[str, Any]:
        """The state once the FINAL summary is there.

        At the last turn the gateway stores a facts-only summary at once; the worker then has the model
        draft the text and emails the result to the professor. The harness waits for that email (it
        carries the booking uid), so it scores the model's summary, not the placeholder.
        """
        deadline = time.monotonic() + self.summary_timeout
        while not self.inbox.summary_sent(uid) and time.monotonic() < deadline:
            time.sleep(2.0)
        return self.state(token)

    def converse(self, persona: Persona, label: str, max_turns: int, rng: random.Random) -> Chat:
        """Book, consent and talk until the interview is over (or the turn budget runs out)."""
        course = self.catalog.courses[persona.course_slug]
        uid = f"eval-{label}-{persona.id}-{secrets.token_hex(4)}"
        local, domain = persona.email.split("@")
        address = f"{local}+{uid.lower()}@{domain}"
        student = SimulatedStudent(persona, course, load_phrases(), rng)
        chat = Chat(persona=persona, uid=uid, token="", started=time.monotonic())
        self.book(persona, uid, address)
        chat.token = self.find_token(address)
        self.consent(chat.token)
        text = student.opening()
        for _ in range(max_turns + 2):  # a stack that never finishes still ends the run
            reply, chat.status, errs = self.say(chat.token, text)
            chat.errors += errs
            if chat.status in FINISHED:
                break
            text = student.reply(slot_of_question(reply))
        chat.seconds = round(time.monotonic() - chat.started, 1)
        return chat

    def score(self, chat: Chat, max_turns: int) -> EvalConversation:
        """Read the final state (after the summary email when the interview finished) and score it."""
        course = self.catalog.courses[chat.persona.course_slug]
        state = self.wait_summary(chat.token, chat.uid) if chat.status in FINISHED else self.state(chat.token)
        messages = [ChatMessage(m["role"], m["text"]) for m in state.get("messages", [])]
        limit = state.get("max_turns", max_turns)
        scored = score_conversation(
            chat.persona,
            course,
            messages,
            state.get("status", chat.status),
            state.get("summary"),
            min_turns=min(5, limit),
            max_turns=limit,
        )
        return EvalConversation(
            persona_id=chat.persona.id,
            style=chat.persona.style,
            booking_uid=chat.uid,
            status=state.get("status", chat.status),
            turns=int(state.get("turn", 0)),
            seconds=chat.seconds,
            messages=messages,
            summary=state.get("summary"),
            scores=scored.scores,
            notes=scored.notes,
            errors=chat.errors,
        )


class Chat(msgspec.Struct, kw_only=True):
    """A finished conversation waiting for its summary."""

    persona: Persona
    uid: str
    token: str
    started: float
    status: str = "active"
    seconds: float = 0.0
    errors: list[str] = []


# ---------------------------------------------------------------- pure helpers (tested)


def booking_payload(persona: Persona, course: Course, uid: str, email_addr: str) -> dict[str, Any]:
    """Cal.com's sample BOOKING_CREATED with this persona's booking, course event type and notes."""
    envelope: dict[str, Any] = (
        json.loads(SAMPLE.read_text())
        if SAMPLE.is_file()
        else {"triggerEvent": "BOOKING_CREATED", "payload": {}}
    )
    start = dt.datetime.fromisoformat(persona.appointment_start.replace("Z", "+00:00"))
    payload: dict[str, Any] = envelope["payload"]
    first, _, last = persona.name.partition(" ")
    payload.update(
        {
            "uid": uid,
            "bookingId": random.randint(10_000, 99_999_999),
            "eventTypeId": next(iter(course.calcom.event_type_ids), None),
            "type": (course.calcom.event_type_slugs or [""])[0],
            "title": f"{course.code} office hours between {course.instructor_name} and {persona.name}",
            "description": persona.booking_note,
            "additionalNotes": persona.booking_note,
            "startTime": start.isoformat().replace("+00:00", "Z"),
            "endTime": (start + dt.timedelta(minutes=20)).isoformat().replace("+00:00", "Z"),
            "organizer": {
                **payload.get("organizer", {}),
                "name": course.instructor_name,
                "email": course.instructor_email,
                "timeZone": course.timezone,
            },
            "attendees": [
                {
                    "email": email_addr,
                    "name": persona.name,
                    "firstName": first,
                    "lastName": last,
                    "timeZone": course.timezone,
                }
            ],
            "responses": {
                "name": {"label": "your_name", "value": persona.name},
                "email": {"label": "email_address", "value": email_addr},
                "notes": {"label": "additional_notes", "value": persona.booking_note},
            },
        }
    )
    envelope["createdAt"] = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    return envelope


def token_from_mail(mail_dir: Path, email_addr: str) -> str | None:
    """The ``/i/{token}`` link in an ``.eml`` addressed to ``email_addr`` (None while none is there)."""
    if not mail_dir.is_dir():
        return None
    for path in sorted(mail_dir.glob("*.eml"), key=lambda p: p.stat().st_mtime, reverse=True):
        message = email.message_from_bytes(path.read_bytes())
        if email_addr.lower() in str(message.get("To", "")).lower() and (token := token_in_message(message)):
            return token
    return None


def token_in_message(message: email.message.Message) -> str | None:
    """The chat token of the ``/i/{token}`` link in an invite email."""
    for part in message.walk():
        if part.get_content_maintype() == "text":
            body = _payload_bytes(part).decode("utf-8", "replace")
            if found := re.search(r"/i/([A-Za-z0-9_-]{16,})", body):
                return found.group(1)
    return None


def summary_mailed(mail_dir: Path, uid: str) -> bool:
    """Whether the professor's summary email for booking ``uid`` has been written."""
    for path in mail_dir.glob("*summary*.eml") if mail_dir.is_dir() else []:
        if uid.encode() in path.read_bytes() or uid in _decoded(path):
            return True
    return False


def _payload_bytes(part: email.message.Message) -> bytes:
    body = part.get_payload(decode=True)
    return body if isinstance(body, bytes) else b""


def _decoded(path: Path) -> str:
    message = email.message_from_bytes(path.read_bytes())
    return "\n".join(
        _payload_bytes(part).decode("utf-8", "replace") for part in message.walk() if not part.is_multipart()
    )


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


def reschedule(persona: Persona, course: Course, now: dt.datetime) -> Persona:
    """Move a persona's appointment into the future (the stack treats past meetings as over), keeping
    the ground truth honest: days to the deadline and urgency are recomputed from the real dates."""
    start = dt.datetime.fromisoformat(persona.appointment_start.replace("Z", "+00:00"))
    if start > now + dt.timedelta(hours=26):
        return persona
    day = (now + dt.timedelta(days=2)).date()
    new_start = dt.datetime.combine(day, start.timetz())
    truth = persona.truth
    assignment = course.assignment(truth.assignment) if truth.assignment else None
    if assignment and assignment.due_date:
        days: int | None = (assignment.due_date - day).days
        deadline = truth.deadline
    elif truth.days_to_deadline is not None:
        days, deadline = truth.days_to_deadline, (day + dt.timedelta(days=truth.days_to_deadline)).isoformat()
    else:
        days, deadline = None, None
    truth = msgspec.structs.replace(
        truth, days_to_deadline=days, deadline=deadline, urgency=urgency_for(days)
    )
    return msgspec.structs.replace(
        persona, appointment_start=new_start.isoformat().replace("+00:00", "Z"), truth=truth
    )


def held_out_personas(catalog: Catalog, count: int | None) -> list[Persona]:
    """The held-out personas, balanced across styles (round-robin), at most ``count`` of them."""
    matrix = load_matrix()
    personas = build_personas(catalog, matrix)
    where = assign_splits(personas, matrix.split, matrix.seed)
    by_style: dict[str, list[Persona]] = defaultdict(list)
    for p in personas:
        if where[p.id] == "test":
            by_style[p.style].append(p)
    ordered: list[Persona] = []
    while any(by_style.values()):
        for style in STYLES:
            if by_style[style]:
                ordered.append(by_style[style].pop(0))
    return ordered[:count] if count else ordered


def aggregate(conversations: Sequence[EvalConversation]) -> tuple[dict[str, float], dict[str, float], float]:
    """Mean score per criterion, per style (over all criteria), and overall."""
    by_criterion = {c: _mean([conv.scores.get(c, 0) for conv in conversations]) for c in CRITERIA}
    styles: dict[str, list[float]] = defaultdict(list)
    for conv in conversations:
        styles[conv.style].append(_mean(list(conv.scores.values())))
    by_style = {s: _mean(v) for s, v in sorted(styles.items())}
    overall = _mean([_mean(list(conv.scores.values())) for conv in conversations])
    return by_criterion, by_style, overall


def _mean(values: Sequence[float]) -> float:
    return round(sum(values) / len(values), 3) if values else 0.0


def format_table(results: Sequence[EvalResults]) -> str:
    """Criteria, styles and the average as rows; one column per results file (0–3 scale)."""
    labels = [r.label for r in results]
    width = max(14, *(len(x) + 2 for x in labels))
    head = f"{'':<22}" + "".join(f"{x:>{width}}" for x in labels)
    lines = [head, "-" * len(head)]
    for name in CRITERIA:
        lines.append(f"{name:<22}" + "".join(f"{r.by_criterion.get(name, 0):>{width}.2f}" for r in results))
    lines.append("-" * len(head))
    for style in sorted({s for r in results for s in r.by_style}):
        cells = "".join(
            f"{r.by_style[style]:>{width}.2f}" if style in r.by_style else f"{'-':>{width}}" for r in results
        )
        lines.append(f"{'style: ' + style:<22}{cells}")
    lines.append("-" * len(head))
    lines.append(f"{'average (0-3)':<22}" + "".join(f"{r.average:>{width}.2f}" for r in results))
    lines.append(f"{'conversations':<22}" + "".join(f"{len(r.conversations):>{width}d}" for r in results))
    return "\n".join(lines)


def load_results(path: Path) -> EvalResults:
    return msgspec.json.decode(path.read_bytes(), type=EvalResults)


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


def default_label(settings: Settings) -> str:
    return "finetuned" if "intake-finetuned" in settings.model else "base"


# ---------------------------------------------------------------- runs


def run_students(
    harness: Harness, personas: Sequence[Persona], label: str, max_turns: int, seed: int, concurrency: int
) -> list[EvalConversation]:
    """Talk to every student (``concurrency`` at a time), then score each once its summary is mailed.

    Each student gets its own seeded RNG, so a student says the same things whatever the order; the
    conversations run side by side because ``mlx_lm.server`` batches concurrent requests (the decode
    rate roughly triples at 4 streams), and the worker drafts summaries while later students talk.
    """

    def talk(item: tuple[int, Persona]) -> Chat | None:
        i, persona = item
        try:
            chat = harness.converse(persona, label, max_turns, random.Random(f"{seed}-{persona.id}"))
        except (httpx.HTTPError, TimeoutError) as exc:
            print(f"[{i}/{len(personas)}] {persona.id} {persona.style}: FAILED {exc}", file=sys.stderr)
            return None
        print(
            f"[{i}/{len(personas)}] {label} {persona.id} {persona.style:<10} {chat.status:<10} "
            f"{chat.seconds:>6.1f}s",
            flush=True,
        )
        return chat

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        chats = [c for c in pool.map(talk, enumerate(personas, 1)) if c is not None]
    conversations: list[EvalConversation] = []
    for chat in chats:
        try:
            conv = harness.score(chat, max_turns)
        except httpx.HTTPError as exc:
            print(f"{chat.persona.id}: FAILED reading the result: {exc}", file=sys.stderr)
            continue
        conversations.append(conv)
        print(
            f"scored {label} {conv.persona_id} {conv.style:<10} {conv.status:<10} turns={conv.turns} "
            f"score={sum(conv.scores.values()) / len(conv.scores):.2f}",
            flush=True,
        )
    return conversations


def results_of(label: str, model: str, gateway: str, conversations: list[EvalConversation]) -> EvalResults:
    by_criterion, by_style, overall = aggregate(conversations)
    return EvalResults(
        label=label,
        model=model,
        gateway=gateway,
        created_at=dt.datetime.now(dt.UTC).isoformat(),
        conversations=conversations,
        by_criterion=by_criterion,
        by_style=by_style,
        average=overall,
    )


def rescore(results: EvalResults, catalog: Catalog, max_turns: int) -> EvalResults:
    """The saved transcripts scored again with the current rubric (the rubric is a pure function).

    Personas are rebuilt and rescheduled as of the run (``created_at``), so the ground truth is the one
    the students played.
    """
    when = dt.datetime.fromisoformat(results.created_at)
    people = {
        p.id: reschedule(p, catalog.courses[p.course_slug], when) for p in held_out_personas(catalog, None)
    }
    conversations = []
    for conv in results.conversations:
        persona = people[conv.persona_id]
        limit = max(max_turns, conv.turns)
        scored = score_conversation(
            persona,
            catalog.courses[persona.course_slug],
            conv.messages,
            conv.status,
            conv.summary,
            min_turns=min(5, limit),
            max_turns=max_turns,
        )
        conversations.append(msgspec.structs.replace(conv, scores=scored.scores, notes=scored.notes))
    by_criterion, by_style, overall = aggregate(conversations)
    return msgspec.structs.replace(
        results, conversations=conversations, by_criterion=by_criterion, by_style=by_style, average=overall
    )


def save_results(results: EvalResults, folder: Path) -> Path:
    out = folder / f"{results.label}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(msgspec.json.format(msgspec.json.encode(results), indent=1))
    return out


def talk_to(
    gateway: str,
    secret: str,
    mail: Path,
    personas: Sequence[Persona],
    label: str,
    catalog: Catalog,
    settings: Settings,
    args: Any,
) -> list[EvalConversation]:
    """Run the students against one gateway whose mail drop is ``mail``."""
    harness = Harness(gateway, secret, MailDir(mail), catalog, args.timeout)
    try:
        return run_students(harness, personas, label, settings.max_turns, args.seed, args.concurrency)
    finally:
        harness.close()


def evaluate_on_own_stack(
    label: str, model: Path, personas: Sequence[Persona], catalog: Catalog, settings: Settings, args: Any
) -> EvalResults:
    """Start the whole supervised stack serving ``model``, run the students through it, stop it."""
    from services import stack

    # the data folder (and so its course index) is reused by the next model
    env = stack.isolated_env(args.data_dir / "eval" / "stack", model, Path(settings.corpus_dir))
    print(f"== {label}: starting a stack serving {model} (first start also indexes the corpus)", flush=True)
    started = time.monotonic()
    try:
        stack.up(env, timeout=args.start_timeout)
        print(
            f"== {label}: ready in {time.monotonic() - started:.0f}s at {env['INTAKE_PUBLIC_URL']}",
            flush=True,
        )
        conversations = talk_to(
            env["INTAKE_PUBLIC_URL"],
            env["INTAKE_CALCOM_WEBHOOK_SECRET"],
            Path(env["INTAKE_DATA_DIR"]) / "mail",
            personas,
            label,
            catalog,
            settings,
            args,
        )
    finally:
        stack.down(env)
    return results_of(label, str(model), env["INTAKE_PUBLIC_URL"], conversations)


# ---------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    settings = load_settings()
    parser = argparse.ArgumentParser(prog="python -m finetune.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--gateway",
        default=None,
        help="evaluate the stack already running at this URL (default: one stack per model)",
    )
    parser.add_argument(
        "--label",
        default=None,
        help="with --gateway: results name (default: base, or finetuned for an intake-finetuned model)",
    )
    parser.add_argument(
        "--model",
        action="append",
        metavar="LABEL=PATH",
        help="models to compare, each on its own stack (default: base=<data>/models/"
        f"{BASE_MODEL_NAME} finetuned=<data>/models/{FUSED_NAME})",
    )
    parser.add_argument("--count", type=int, default=16, help="test personas to run (0 = all)")
    parser.add_argument("--concurrency", type=int, default=4, help="students talking at the same time")
    parser.add_argument("--data-dir", type=Path, default=settings.data_path)
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per HTTP request")
    parser.add_argument("--start-timeout", type=float, default=900.0, help="seconds for a stack to come up")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--compare",
        nargs="+",
        type=Path,
        metavar="RESULTS.json",
        help="print saved results side by side and exit",
    )
    parser.add_argument(
        "--rescore",
        nargs="+",
        type=Path,
        metavar="RESULTS.json",
        help="score saved transcripts again with the current rubric (rewrites the files) and exit",
    )
    args = parser.parse_args(argv)
    # SIGTERM (a stopped `make eval`) unwinds like Ctrl-C, so the evaluation stack is shut down
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.compare:
        print(format_table([load_results(p) for p in args.compare]))
        return 0
    catalog = load_catalog(Path(settings.corpus_dir))
    if args.rescore:
        rescored = [rescore(load_results(p), catalog, settings.max_turns) for p in args.rescore]
        for path, results in zip(args.rescore, rescored, strict=True):
            path.write_bytes(msgspec.json.format(msgspec.json.encode(results), indent=1))
        print(format_table(rescored))
        return 0
    now = dt.datetime.now(dt.UTC)
    personas = [
        reschedule(p, catalog.courses[p.course_slug], now) for p in held_out_personas(catalog, args.count)
    ]
    runs: list[EvalResults] = []
    if args.gateway:
        label = args.label or default_label(settings)
        secret = webhook_secret(settings, args.data_dir)
        mail = args.data_dir / "mail"
        conversations = talk_to(args.gateway, secret, mail, personas, label, catalog, settings, args)
        runs.append(results_of(label, settings.model or settings.model_path, args.gateway, conversations))
        print(f"results: {save_results(runs[-1], args.data_dir / 'eval')}")
    else:
        for label, model in models_to_compare(args.model, args.data_dir):
            runs.append(evaluate_on_own_stack(label, model, personas, catalog, settings, args))
            print(f"results: {save_results(runs[-1], args.data_dir / 'eval')}", flush=True)
    print(format_table(runs))
    return 0 if all(r.conversations for r in runs) else 1


def models_to_compare(given: list[str] | None, data_dir: Path) -> list[tuple[str, Path]]:
    """``LABEL=PATH`` pairs, or base and fine-tuned from the data folder (fine-tuned must exist)."""
    if given:
        pairs = [item.partition("=") for item in given]
        bad = [label for label, eq, path in pairs if not eq or not Path(path).is_dir()]
        if bad:
            raise SystemExit(f"--model wants LABEL=PATH to a model folder; not usable: {bad}")
        return [(label, Path(path).resolve()) for label, _, path in pairs]
    base = data_dir / "models" / BASE_MODEL_NAME
    tuned = data_dir / "models" / FUSED_NAME
    if not base.is_dir():
        raise SystemExit(f"no base model at {base}: run `make model` (or `make run`) first")
    if not tuned.is_dir():
        raise SystemExit(f"no fine-tuned model at {tuned}: run `make finetune` first")
    return [("base", base.resolve()), ("finetuned", tuned.resolve())]


if __name__ == "__main__":
    raise SystemExit(main())
