"""`POST /api/notifications`: Graph's call notifications, forwarded by the bot with Graph's own token.

The token is checked before anything else (`NotificationKeys` holds the signing keys of the OpenID
configuration at `GRAPH_NOTIFICATION_OPENID_URL`). Then each item of `value` is read leniently:
property names and enum values in any case, `resourceUrl` as `/communications/calls/{id}` or
`/app/calls/{id}` (leading and trailing slash optional), `resourceData` an object or a list. Only
call resources matter; anything else is counted as ignored.

- `established`: registers the call under the token's `tid`, unless it ended within 24 hours.
- `terminated` (or `changeType: deleted` on a call resource): a known call of that tenant (its stored
  tenant, else `GRAPH_TENANT_ID`) is removed with a `callEnded` event (event first, then the memory of the
  end, then the delete); a call of another tenant, or with neither tenant, is ignored with a warning. The
  end of an unknown call is remembered for 24 hours.

Every step is idempotent, so a bot may simply resend a notification that got a 503. The rules (`apply`,
`established`, `terminated`, `fold`) take the storage Protocols of shared/storage; `receive` alone reads the
Context.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import azure.functions as func
import jwt

from shared import registry
from shared.context import Context
from shared.ending import end_call
from shared.errors import Conflict, InvalidRequest, InvalidToken
from shared.events import call_ended_event
from shared.http_api import handler, json_response, read_json
from shared.logsafe import get_logger, safe
from shared.models import call_id_problem
from shared.settings import GUID_RE
from shared.signing_keys import ALGORITHM, NotificationKeys
from shared.storage import Calls, EndMemory, EventQueue

logger = get_logger(__name__)

ISSUERS = ("https://api.botframework.com", "https://graph.microsoft.com")
LEEWAY_SECONDS = 300
MAX_ITEMS = 100
CALL_TYPE = "#microsoft.graph.call"
REASON = "terminatedNotification"
_CALL_URL_PREFIXES = (("communications", "calls"), ("app", "calls"))


# --- the token ----------------------------------------------------------------------------------
_TOKEN_ERRORS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "token has expired"),
    (jwt.ImmatureSignatureError, "token is not valid yet"),
    (jwt.InvalidAudienceError, "token audience is not this app"),
    (jwt.InvalidIssuerError, "token issuer is not accepted"),
    (jwt.InvalidSignatureError, "token signature is invalid"),
    (jwt.InvalidAlgorithmError, "token algorithm must be RS256"),
    (jwt.DecodeError, "token is malformed"),
)


def bearer_token(req: func.HttpRequest) -> str:
    """The token of `Authorization: Bearer <token>` (scheme in any case)."""
    value = req.headers.get("Authorization")
    if not isinstance(value, str) or not value.strip():
        raise InvalidToken("the Authorization header with Graph's bearer token is missing")
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or any(ch.isspace() for ch in token):
        raise InvalidToken("the Authorization header must be 'Bearer <token>'")
    return token


def validate_token(token: str, *, audience: str | None, keys: NotificationKeys) -> str:
    """Check Graph's notification token; returns its tenant (`tid`, lowercase). Raises `InvalidToken`.

    No message ever holds the token or any part of it.
    """
    if not audience:
        logger.error("notifications refused: GRAPH_CLIENT_ID is not set, so no token audience can be checked")
        raise InvalidToken("notifications are not configured on this app")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise InvalidToken("token is malformed") from None
    if header.get("alg") != ALGORITHM:
        raise InvalidToken("token algorithm must be RS256")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidToken("token has no key id")
    key = keys.key_for(kid)
    try:
        claims = jwt.decode(
            token,
            key.key,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=ISSUERS,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iss", "aud"]},
        )
    except jwt.MissingRequiredClaimError as error:
        raise InvalidToken(f"token has no {error.claim} claim") from None
    except jwt.PyJWTError as error:
        message = next((text for kind, text in _TOKEN_ERRORS if isinstance(error, kind)), "token is invalid")
        raise InvalidToken(message) from None
    tid = claims.get("tid")
    if tid is None:
        raise InvalidToken("token has no tid claim")
    if not isinstance(tid, str) or not GUID_RE.match(tid):
        raise InvalidToken("token tid claim is not a tenant id")
    return tid.lower()


# --- the payload --------------------------------------------------------------------------------
def _field(obj: Mapping[str, Any], name: str) -> Any:
    """`obj[name]` with the name in any case (an exact match wins over a case-insensitive one)."""
    if name in obj:
        return obj[name]
    wanted = name.casefold()
    return next((value for key, value in obj.items() if isinstance(key, str) and key.casefold() == wanted), None)


def _word(value: Any) -> str | None:
    """An enum value, lowercased, or None when it is not a string."""
    return value.strip().casefold() if isinstance(value, str) else None


def call_id_of(resource_url: Any) -> str | None:
    """The callId of a call resource URL (`/communications/calls/{id}` or `/app/calls/{id}`), else None.

    The leading and one trailing slash are optional; the id is taken verbatim (no percent-decoding).
    """
    if not isinstance(resource_url, str):
        return None
    path = resource_url.strip()
    path = path[1:] if path.startswith("/") else path
    path = path[:-1] if path.endswith("/") else path
    segments = path.split("/")
    if len(segments) != 3 or tuple(s.casefold() for s in segments[:2]) not in _CALL_URL_PREFIXES:
        return None
    call_id = segments[2]
    return call_id if call_id_problem(call_id) is None else None


def _call_resource(resource_data: Any) -> Mapping[str, Any] | None:
    """The call resource of `resourceData` (an object, or the first call object of a list)."""
    candidates = resource_data if isinstance(resource_data, list) else [resource_data]
    for candidate in candidates:
        if isinstance(candidate, dict):
            odata_type = _word(_field(candidate, "@odata.type"))
            if odata_type is not None and "#" + odata_type.lstrip("#") == CALL_TYPE:
                return candidate
    return None


@dataclass(frozen=True, slots=True)
class CallNotification:
    """One item of `value` that concerns a call: what happened to which call."""

    call_id: str
    event: str  # "established" or "terminated"
    result_info: Mapping[str, Any]


def parse_item(item: Any) -> CallNotification | None:
    """The call notification of one item of `value`, or None when the item is not one that matters."""
    if not isinstance(item, dict):
        return None
    resource_url = _field(item, "resourceUrl")
    call_id = call_id_of(resource_url if resource_url is not None else _field(item, "resource"))
    resource = _call_resource(_field(item, "resourceData"))
    if call_id is None or resource is None:
        return None
    resource_id = _field(resource, "id")
    if isinstance(resource_id, str) and resource_id and resource_id != call_id:
        logger.warning("notification ignored callId=%s reason=resourceData.id differs from resourceUrl", safe(call_id))
        return None
    state = _word(_field(resource, "state"))
    if _word(_field(item, "changeType")) == "deleted" or state == "terminated":
        event = "terminated"
    elif state == "established":
        event = "established"
    else:
        return None
    result_info = _field(resource, "resultInfo")
    return CallNotification(call_id, event, result_info if isinstance(result_info, dict) else {})


def graph_result(result_info: Mapping[str, Any]) -> dict[str, Any]:
    """The event's `graph` object from `resultInfo`: code, subcode, message (a missing or odd value is null)."""

    def scalar(name: str, kinds: tuple[type, ...]) -> Any:
        value = _field(result_info, name)
        return value if isinstance(value, kinds) and not isinstance(value, bool) else None

    return {
        "code": scalar("code", (int, str)),
        "subcode": scalar("subcode", (int, str)),
        "message": scalar("message", (str,)),
    }


def fold(notes: list[CallNotification]) -> list[CallNotification]:
    """One notification per call, the last one of each (the last state wins), in order of first appearance.

    So a payload's storage work grows with its distinct calls, not its items. A `terminated` that is
    followed by an `established` of the same call still ends it: the end is kept, and the memory of it
    then turns the `established` away, as two separate payloads would.
    """
    last: dict[str, CallNotification] = {}
    ended: set[str] = set()
    for note in notes:
        if note.event == "terminated":
            ended.add(note.call_id)
            last[note.call_id] = note
        elif note.call_id not in ended:
            last[note.call_id] = note
    return list(last.values())


# --- the rules: what one notification does -----------------------------------------------------
Outcome = Literal["registered", "removed", "ignored"]


def established(calls: Calls, memory: EndMemory, note: CallNotification, tenant_id: str, now: datetime) -> Outcome:
    """Register the call under the token's tenant, unless it ended under that tenant within 24 hours (its end is
    remembered), or it is registered already (unchanged), or under another tenant (a warning)."""
    if memory.recently_ended(note.call_id, tenant_id, now):
        logger.info("notification ignored callId=%s reason=ended within 24 hours", safe(note.call_id))
        return "ignored"
    try:
        record, created = registry.register(
            calls, call_id=note.call_id, tenant_id=tenant_id, default_tenant_id=None, metadata={}, now=now
        )
    except Conflict:
        logger.warning(
            "notification ignored callId=%s tenantId=%s reason=call registered under another tenant",
            safe(note.call_id),
            tenant_id,
        )
        return "ignored"
    if not created:
        return "ignored"
    logger.info("call registered by notification callId=%s tenantId=%s", safe(note.call_id), record.tenant_id)
    return "registered"


def terminated(
    calls: Calls,
    events: Sequence[EventQueue],
    memory: EndMemory,
    note: CallNotification,
    tenant_id: str,
    *,
    default_tenant_id: str | None,
    now: datetime,
) -> Outcome:
    """End a known call of the token's tenant (its stored tenant, else `default_tenant_id`, GRAPH_TENANT_ID) with a
    `callEnded` event (shared/ending.py); remember the end of an unknown call; ignore any other with a warning."""
    record = calls.get(note.call_id)
    if record is None:  # an unknown call: no event, but its end is remembered all the same
        memory.remember(note.call_id, tenant_id=tenant_id, reason=REASON, now=now)
        return "ignored"
    call_tenant = record.tenant_id or default_tenant_id  # the tenant the tick keeps it alive under
    if call_tenant is None:  # no tenant to compare with: a token of any tenant could end it, so none does
        logger.warning(
            "notification ignored callId=%s tenantId=%s reason=the call has no tenant and GRAPH_TENANT_ID is not "
            "set, so its tenant cannot be checked",
            safe(note.call_id),
            tenant_id,
        )
        return "ignored"
    if call_tenant != tenant_id:
        logger.warning(
            "notification ignored callId=%s tenantId=%s callTenantId=%s reason=terminated by another tenant",
            safe(note.call_id),
            tenant_id,
            call_tenant,
        )
        return "ignored"
    event = call_ended_event(
        record, tenant_id=tenant_id, detected_at=now, reason=REASON, graph=graph_result(note.result_info)
    )
    if not end_call(calls, events, memory, record, event, now):
        return "ignored"
    logger.info("call removed by notification callId=%s tenantId=%s", safe(note.call_id), tenant_id)
    return "removed"


def apply(
    items: Sequence[Any],
    tenant_id: str,
    *,
    calls: Calls,
    events: Sequence[EventQueue],
    memory: EndMemory,
    default_tenant_id: str | None,
    now: Callable[[], datetime],
) -> Counter[Outcome]:
    """The items of a payload's `value` under the token's tenant: each call's notifications folded into one
    (`fold`), each `established` or `terminated` in order of first appearance; an item that is not a call
    notification, or that was folded away, counts as ignored. Raises when storage fails (the bot resends)."""
    notes = [note for item in items if (note := parse_item(item)) is not None]
    folded = fold(notes)
    counts: Counter[Outcome] = Counter()
    counts["ignored"] = len(items) - len(folded)
    for note in folded:
        if note.event == "established":
            counts[established(calls, memory, note, tenant_id, now())] += 1
        else:
            counts[
                terminated(calls, events, memory, note, tenant_id, default_tenant_id=default_tenant_id, now=now())
            ] += 1
    return counts


# --- the handler --------------------------------------------------------------------------------
@handler
def receive(ctx: Context, req: func.HttpRequest) -> func.HttpResponse:
    tenant_id = validate_token(bearer_token(req), audience=ctx.settings.client_id, keys=ctx.notification_keys())
    body = read_json(req)
    items = _field(body, "value") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise InvalidRequest("the body must be an object whose value is a list of notifications")
    if len(items) > MAX_ITEMS:
        raise InvalidRequest(f"value must hold at most {MAX_ITEMS} notifications (got {len(items)})")
    counts = apply(
        items,
        tenant_id,
        calls=ctx.calls,
        events=ctx.event_queues,
        memory=ctx.recent_ends,
        default_tenant_id=ctx.settings.tenant_id,
        now=ctx.now,
    )
    logger.info(
        "notifications processed tenantId=%s items=%d registered=%d removed=%d ignored=%d",
        tenant_id,
        len(items),
        counts["registered"],
        counts["removed"],
        counts["ignored"],
    )
    return json_response({name: counts[name] for name in ("registered", "removed", "ignored")}, 202)
