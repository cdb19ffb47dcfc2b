#!/usr/bin/env python3
"""Validate OpenAI Realtime wire events (one JSON object per line) against the
official `openai` Python SDK pydantic models.

Usage:
    python3 validate_events.py --dialect ga|beta|live --direction client|server FILE.jsonl
        [--allow-undeclared PATTERN]... [--no-drift-allowance] [--lax] [--quiet]

Models used (see docs/realtime-protocol reference §8):
    GA   client  openai.types.realtime.RealtimeClientEvent        (11 event types)
    GA   server  openai.types.realtime.RealtimeServerEvent        (46 event types)
    beta client  openai.types.beta.realtime.RealtimeClientEvent   (12 event types)
    beta server  openai.types.beta.realtime.RealtimeServerEvent   (34 event types)
    live client  openai.types.live.ClientEvent                    (15 event types; GPT-Live)
    live server  openai.types.live.ServerEvent                    (GPT-Live, primary + sideband)

The `live` unions need openai >= 3.51 (`openai.types.live`); the GPT-Live server rejects
unknown fields, so for `live` an UNDECLARED key is exactly what the real service refuses.

The SDK unions are `Annotated[Union[...], PropertyInfo(discriminator="type")]`;
PropertyInfo is openai-internal metadata, so the union members are re-wrapped
in a pydantic discriminated union (precise errors; an event type that the
dialect does not know is INVALID).

Checks per line:
  * the line is a JSON object that validates against the union, in pydantic
    *strict* JSON mode (so "640" is not accepted for an int); `--lax` switches
    to pydantic's default lax mode;
  * UNDECLARED keys: openai's BaseModel uses extra="allow", so unknown or
    misspelled keys validate silently. The validated model tree is walked
    (models, lists, dicts) and every key in `model_extra` is reported with its
    JSON path, e.g. `$.session.temperature`, `$.response.output[0].foo`.

Allowances (known SDK lag / wire drift; each use is counted in the summary):
  * --allow-undeclared PATTERN (repeatable): accept undeclared keys matching
    PATTERN = [EVENT_TYPE_GLOB:]PATH_GLOB. `*` matches any run of characters;
    list indices in observed paths are normalised to `[*]`. Examples:
        --allow-undeclared 'session.*:$.session.expires_at'
        --allow-undeclared '$.response.output[*].content[*].foo'
    Typical need: GA `session.created/updated` carry `session.id`,
    `session.object` and `session.expires_at`, which the SDK's
    RealtimeSessionCreateRequest (used for those events) does not declare.
  * Content-part type drift (GA server only, on by default): the SDK types
    `response.content_part.added|done` `part.type` as "text"|"audio", but GA
    servers send "output_text"|"output_audio". Those two values are mapped to
    the SDK literal before validation and the line is reported as DRIFT (not a
    failure). Any other part.type still fails. Disable with
    --no-drift-allowance.

Output: one line per problem (INVALID / UNDECLARED / DRIFT), then a per-event
type summary table and a RESULT line.
Exit status: 0 = every line valid without unallowed undeclared keys;
1 = at least one INVALID line or unallowed undeclared key (or no events);
2 = usage error / unreadable file; 3 = the `openai` package is not installed.
"""
import argparse
import json
import re
import sys
import typing
from collections import OrderedDict

INSTALL_HINT = (
    "the `openai` Python package is required: install it with "
    "`{py} -m pip install openai` (or point FRONTDESK_TEST_PYTHON at a python that has it)"
)

try:
    import openai
    from pydantic import BaseModel, Field, TypeAdapter, ValidationError
    from openai.types.realtime import (
        RealtimeClientEvent as GAClient,
        RealtimeServerEvent as GAServer,
    )
    from openai.types.beta.realtime import (
        RealtimeClientEvent as BetaClient,
        RealtimeServerEvent as BetaServer,
    )
    from openai.types.live import ClientEvent as LiveClient, ServerEvent as LiveServer
except ImportError as exc:  # pragma: no cover - environment problem
    print(f"error: {exc}", file=sys.stderr)
    print("error: " + INSTALL_HINT.format(py=sys.executable) + " (>= 3.51 for openai.types.live)",
          file=sys.stderr)
    sys.exit(3)

UNIONS = {
    ("ga", "client"): GAClient,
    ("ga", "server"): GAServer,
    ("beta", "client"): BetaClient,
    ("beta", "server"): BetaServer,
    ("live", "client"): LiveClient,
    ("live", "server"): LiveServer,
}

# GA wire value -> SDK literal for response.content_part.*.part.type
PART_TYPE_DRIFT = {"output_audio": "audio", "output_text": "text"}
CONTENT_PART_EVENTS = ("response.content_part.added", "response.content_part.done")


def discriminated_adapter(alias):
    """Wrap the members of an SDK event union in a pydantic discriminated union."""
    union = typing.get_args(alias)[0]  # strip Annotated[..., PropertyInfo]
    members = typing.get_args(union)
    return TypeAdapter(typing.Annotated[typing.Union[members], Field(discriminator="type")])


def undeclared_paths(obj, path="$"):
    """Yield the JSON path of every key a model received but does not declare."""
    if isinstance(obj, BaseModel):
        for key in obj.model_extra or {}:
            yield f"{path}.{key}"
        for name in type(obj).model_fields:
            yield from undeclared_paths(getattr(obj, name, None), f"{path}.{name}")
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from undeclared_paths(value, f"{path}[{i}]")
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from undeclared_paths(value, f"{path}.{key}")


def glob_regex(glob):
    return re.compile(re.escape(glob).replace(r"\*", ".*"))


class Allowance:
    """One --allow-undeclared pattern: [EVENT_TYPE_GLOB:]PATH_GLOB."""

    def __init__(self, spec):
        self.spec = spec
        type_glob, path_glob = "*", spec
        if not spec.startswith("$") and ":" in spec:
            type_glob, path_glob = spec.split(":", 1)
        if not path_glob.startswith("$"):
            raise argparse.ArgumentTypeError(
                f"--allow-undeclared {spec!r}: the path must start with '$' (e.g. '$.session.id')"
            )
        self.type_re = glob_regex(type_glob)
        self.path_re = glob_regex(path_glob)

    def matches(self, event_type, path):
        normalised = re.sub(r"\[\d+\]", "[*]", path)
        return bool(self.type_re.fullmatch(event_type) and self.path_re.fullmatch(normalised))


def apply_part_type_drift(event):
    """Return (event', drift_note or None) for the known content-part drift."""
    if event.get("type") not in CONTENT_PART_EVENTS:
        return event, None
    part = event.get("part")
    if not isinstance(part, dict) or part.get("type") not in PART_TYPE_DRIFT:
        return event, None
    wire = part["type"]
    fixed = dict(event, part=dict(part, type=PART_TYPE_DRIFT[wire]))
    return fixed, f"part.type {wire!r} accepted as {PART_TYPE_DRIFT[wire]!r} (known SDK drift)"


def first_error(exc):
    err = exc.errors()[0]
    loc = ".".join(str(x) for x in err["loc"])
    return f"{exc.error_count()} error(s); first at '{loc}': {err['msg']}"


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Validate Realtime JSONL events against the openai SDK models."
    )
    ap.add_argument("--dialect", required=True, choices=["ga", "beta", "live"])
    ap.add_argument("--direction", required=True, choices=["client", "server"])
    ap.add_argument("--allow-undeclared", action="append", default=[], type=Allowance,
                    metavar="PATTERN", help="[EVENT_TYPE_GLOB:]PATH_GLOB; repeatable")
    ap.add_argument("--no-drift-allowance", action="store_true",
                    help="fail GA content_part part.type 'output_audio'/'output_text'")
    ap.add_argument("--lax", action="store_true", help="pydantic lax mode instead of strict")
    ap.add_argument("--quiet", action="store_true", help="only print problems and the result")
    ap.add_argument("file", help="JSONL file ('-' for stdin)")
    args = ap.parse_args(argv)

    adapter = discriminated_adapter(UNIONS[(args.dialect, args.direction)])
    drift_enabled = args.dialect == "ga" and args.direction == "server" and not args.no_drift_allowance

    try:
        stream = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")
    except OSError as exc:
        print(f"error: cannot open {args.file}: {exc}", file=sys.stderr)
        return 2

    # per type: [ok, invalid, undeclared, allowed, drift]
    summary = OrderedDict()
    failures = 0
    total = 0
    with stream:
        for lineno, raw in enumerate(stream, 1):
            if not raw.strip():
                continue
            total += 1
            try:
                event = json.loads(raw)
            except json.JSONDecodeError as exc:
                summary.setdefault("<not json>", [0, 0, 0, 0, 0])[1] += 1
                print(f"line {lineno}: INVALID not JSON: {exc}")
                failures += 1
                continue
            event_type = event.get("type") if isinstance(event, dict) else None
            key = event_type if isinstance(event_type, str) else "<no type>"
            row = summary.setdefault(key, [0, 0, 0, 0, 0])
            if not isinstance(event, dict):
                row[1] += 1
                failures += 1
                print(f"line {lineno}: INVALID top level is not a JSON object")
                continue
            note = None
            if drift_enabled:
                event, note = apply_part_type_drift(event)
            try:
                if args.lax:
                    model = adapter.validate_python(event)
                else:
                    model = adapter.validate_json(json.dumps(event), strict=True)
            except ValidationError as exc:
                row[1] += 1
                failures += 1
                print(f"line {lineno}: {key}: INVALID {first_error(exc)}")
                continue
            if note:
                row[4] += 1
                print(f"line {lineno}: {key}: DRIFT {note}")
            extra = list(undeclared_paths(model))
            allowed = [p for p in extra if any(a.matches(key, p) for a in args.allow_undeclared)]
            unallowed = [p for p in extra if p not in allowed]
            if allowed:
                row[3] += 1
                if not args.quiet:
                    print(f"line {lineno}: {key}: allowed undeclared {allowed}")
            if unallowed:
                row[2] += 1
                failures += 1
                print(f"line {lineno}: {key}: UNDECLARED {unallowed} (model {type(model).__name__})")
            else:
                row[0] += 1

    if not args.quiet:
        print(f"openai {openai.__version__}; dialect={args.dialect} direction={args.direction} "
              f"mode={'lax' if args.lax else 'strict'} file={args.file}")
        width = max([len(k) for k in summary] + [10])
        print(f"{'event type':<{width}}  {'ok':>4} {'invalid':>7} {'undecl':>6} {'allowed':>7} {'drift':>5}")
        for k, (ok, bad, und, allowed, drift) in summary.items():
            print(f"{k:<{width}}  {ok:>4} {bad:>7} {und:>6} {allowed:>7} {drift:>5}")
    if total == 0:
        print("RESULT: FAIL (no events in input)")
        return 1
    verdict = "OK" if failures == 0 else "FAIL"
    print(f"RESULT: {verdict} ({total} events, {failures} with problems)")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
