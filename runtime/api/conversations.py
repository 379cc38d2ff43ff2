"""A voice session's stored transcript: staff see any session, a guest only the one its token opens."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from runtime.api.security import require_principal
from runtime.auth import valid_session_id
from runtime.errors import Forbidden, NotFound
from runtime.services import services_of


async def get_conversation(request: Request) -> JSONResponse:
    """The turns of one conversation, in order.
    ---
    summary: Stored transcript of a voice session
    security: [{bearer: []}]
    parameters:
      - {name: session_id, in: path, required: true, schema: {type: string}}
    responses:
      200: {description: '{"sessionId", "session": record or null, "turns": [{seq, role, text, created_at, turn_id}]}'}
      401: {description: no valid credential}
      403: {description: a guest token of another session}
      404: {description: malformed session id}
    """
    principal = require_principal(request)
    session_id = request.path_params["session_id"]
    if not valid_session_id(session_id):
        raise NotFound("No conversation with that id.", code="conversation_not_found")
    if not principal.may_read_session(session_id):
        raise Forbidden("This session token opens a different conversation.")
    store = services_of(request).store
    turns = await store.conversations.list(session_id)
    session = await store.sessions.get(session_id)
    return JSONResponse({
        "sessionId": session_id,
        "session": session.to_dict() if session else None,
        "turns": [t.to_dict() for t in turns],
    })


def routes() -> list[BaseRoute]:
    return [Route("/api/conversations/{session_id}", get_conversation, methods=["GET"])]
