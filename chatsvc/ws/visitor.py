"""The visitor endpoint, /ws/visitor: one visitor, one conversation, any number of tabs."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from starlette.websockets import WebSocket

from chatsvc.live.service import ChatService, ServiceError
from chatsvc.ops import metrics
from chatsvc.ops.logs import conversation_id_var
from chatsvc.web.security import client_address, limits_for
from chatsvc.ws import protocol
from chatsvc.ws.connection import Closed, Connection
from chatsvc.ws.protocol import CloseCode, ErrorCode

log = logging.getLogger("chatsvc.ws")
_LATENCY = metrics.MESSAGE_LATENCY.labels("visitor")
_MESSAGES = metrics.MESSAGES.labels("visitor")


def origin_allowed(websocket: WebSocket, allowlist: tuple[str, ...]) -> bool:
    """Browsers always send Origin; a socket without one is not a page and cannot ride a visitor's cookies."""
    origin = websocket.headers.get("origin")
    if origin is None or "*" in allowlist:
        return True
    origin = origin.rstrip("/").lower()
    if "self" in allowlist:
        host = websocket.headers.get("host", "")
        scheme = "https" if websocket.url.scheme == "wss" else "http"
        if origin == f"{scheme}://{host}".lower():
            return True
        parsed = urlsplit(origin)
        if parsed.netloc == host.lower():
            return True
    return origin in {o.lower() for o in allowlist}


class VisitorConnection(Connection):
    role = "visitor"

    @property
    def address(self) -> str | None:
        return client_address(self.ws.client)

    async def serve(self) -> None:
        hello: protocol.VisitorHello = await self.first_frame(protocol.visitor_decoder, protocol.VISITOR_TYPES)
        try:
            session = await self.service.open_visitor(hello, register=True)
        except ServiceError as exc:
            if exc.code == ErrorCode.RESYNC_REQUIRED:
                self.send_error(exc.code, exc.message, ref=hello.ref, conversation_id=exc.conversation_id)
                hello.last_seq = 0
                session = await self.service.open_visitor(hello, register=True)
            else:
                self.send_error(exc.code, exc.message, ref=hello.ref, retryable=exc.retryable)
                raise Closed(CloseCode.UNAUTHORIZED if exc.code == ErrorCode.IDENTITY_INVALID
                             else CloseCode.INTERNAL_ERROR, exc.message) from None
        self.visitor_id = session.visitor_id
        self.conversation_id = session.conversation.id
        if session.presence_id is not None:
            self.presence_id = session.presence_id
        self.limits = limits = limits_for(self.settings)
        self.exempt = limits.address_exempt(self.address)
        if not self.exempt and not limits.visitor_connects.take(self.visitor_id):
            metrics.RATE_LIMITED.labels("connect").inc()
            self.send_error(ErrorCode.RATE_LIMITED, "this visitor reconnects too often; wait a minute",
                            ref=hello.ref, retryable=True)
            raise Closed(CloseCode.FLOOD, "too many connections")
        conversation_id_var.set(self.conversation_id)  # on every log line of this session
        log.debug("visitor session opened (%s)", session.conversation.state)
        if session.presence_id is None:
            self.presence_id = await self.service.register_visitor(self.conversation_id)
        self.send(protocol.VisitorWelcome(v=protocol.PROTOCOL_LEVEL, token=session.token,
                                          visitor_id=session.visitor_id, conversation=session.conversation,
                                          limits=self.service.limits()))
        await self.start_delivery(self.conversation_id, hello.last_seq, include_internal=False)
        service: ChatService = self.service
        conv = self.conversation_id
        async for frame in self.frames(protocol.visitor_decoder, protocol.VISITOR_TYPES):
            match frame:
                case protocol.VisitorMessage():
                    await self.handle(frame, lambda f=frame: self._message(f))
                case protocol.VisitorTyping():
                    await self.handle(frame, lambda f=frame: service.typing("visitor", conv, f.active, None))
                case protocol.VisitorReceipt():
                    await self.handle(frame, lambda f=frame: service.receipt("visitor", conv, f.seq, f.status))
                case protocol.RequestAgent():
                    await self.handle(frame, lambda f=frame: self._done(
                        f, service.request_agent(self.visitor_id, conv, f.email)))
                case protocol.LeaveEmail():
                    await self.handle(frame, lambda f=frame: self._done(
                        f, service.leave_email(self.visitor_id, conv, f.email)))
                case protocol.Feedback():
                    await self.handle(frame, lambda f=frame: self._done(
                        f, service.feedback(self.visitor_id, conv, f.seq, f.article_id, f.helpful)))
                case protocol.Csat():
                    await self.handle(frame, lambda f=frame: self._done(f, self._csat(f)))
                case protocol.VisitorEnd():
                    await self.handle(frame, lambda f=frame: self._done(f, service.visitor_end(self.visitor_id, conv)))
                case protocol.Ping():
                    self.send(protocol.Pong(ref=frame.ref))
                case protocol.VisitorHello():
                    self.send_error(ErrorCode.BAD_FRAME, "hello was already received", ref=frame.ref)

    async def cleanup(self) -> None:
        if getattr(self, "presence_id", None) is not None:
            await self.service.unregister_visitor(self.presence_id, self.conversation_id)

    async def _csat(self, frame: protocol.Csat) -> None:
        if self.service.tickets is None:
            raise ServiceError(ErrorCode.UNAVAILABLE, "satisfaction surveys are not enabled")
        await self.service.tickets.record_csat(rating=frame.rating, comment=frame.comment,
                                               conversation_id=self.conversation_id)

    async def _message(self, frame: protocol.VisitorMessage) -> None:
        limits = self.limits
        if not self.exempt and (not limits.visitor_messages.take(self.visitor_id)
                                or not limits.ip_messages.take(self.address or "")):
            metrics.RATE_LIMITED.labels("visitor_message").inc()
            raise ServiceError(ErrorCode.RATE_LIMITED, "too many messages; slow down and send it again",
                               retryable=True)
        with _LATENCY.time():
            ack = await self.service.visitor_message(self.visitor_id, self.conversation_id, frame.client_id,
                                                     frame.text)
        if not ack.duplicate:
            _MESSAGES.inc()
        ack.ref = frame.ref
        self.send(ack)

    async def _done(self, frame: protocol.VisitorFrame, action) -> None:  # type: ignore[no-untyped-def]
        await action
        self.send(protocol.Done(ref=frame.ref, conversation_id=self.conversation_id))
