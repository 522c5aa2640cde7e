"""The agent endpoint, /ws/agent: offers, owned conversations, and every command an agent gives."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgspec

from chatsvc.broker import BrokerClosed, BrokerGap, BrokerUnavailable, SubscriberOverflow
from chatsvc.live import wire
from chatsvc.live.service import AgentRef, ServiceError
from chatsvc.ops import metrics
from chatsvc.ws import protocol
from chatsvc.ws.connection import Closed, Connection
from chatsvc.ws.protocol import CloseCode, ErrorCode

CHAT_ROLES = frozenset({"agent", "lead", "manager", "admin"})  # docs/security.md, the websocket matrix
_control = msgspec.json.Decoder(
    protocol.Offer | protocol.OfferRevoked | protocol.Assigned | protocol.Unassigned | protocol.TicketNotice
)


SESSION_CHECK_INTERVAL = 30.0  # a console session ended where no broker reaches (the CLI) closes within this


class AgentConnection(Connection):
    role = "agent"
    agent: AgentRef
    session_id: str | None = None
    console_session_id: str | None = None  # set when the console's session cookie authenticated the socket
    _session_watch: asyncio.Task[None] | None = None
    _control_pump: asyncio.Task[None] | None = None
    _control_sub: Any = None

    async def serve(self) -> None:
        hello: protocol.AgentHello = await self.first_frame(protocol.agent_decoder, protocol.AGENT_TYPES)
        if hello.token is None:
            from chatsvc.console.auth import websocket_session

            console = await websocket_session(self.ws)
            agent = console.agent if console is not None else None
            if console is None:
                self.send_error(ErrorCode.UNAUTHORIZED, "no console session: log in again", ref=hello.ref)
                raise Closed(CloseCode.UNAUTHORIZED, "no console session")
            self.console_session_id = console.id
            self._session_watch = asyncio.create_task(self._watch_session())
        else:
            agent = await self.service.authenticate_agent(hello.token)
        if agent is None:
            self.send_error(ErrorCode.UNAUTHORIZED, "unknown agent token", ref=hello.ref)
            raise Closed(CloseCode.UNAUTHORIZED, "unknown agent token")
        if agent.role not in CHAT_ROLES:  # writers write articles: no offers, no transcripts
            self.send_error(ErrorCode.UNAUTHORIZED, f"the {agent.role} role does not work chats", ref=hello.ref)
            raise Closed(CloseCode.UNAUTHORIZED, "role does not work chats")
        self.agent = agent
        self.session_id = await self.service.register_session(agent.id)
        subscription = self.service.broker.subscribe(wire.agent_channel(agent.id),
                                                     maxsize=self.settings.subscriber_queue)
        try:
            await subscription.__aenter__()
        except BrokerUnavailable:
            self.send_error(ErrorCode.UNAVAILABLE, "live delivery is unavailable; reconnect shortly", retryable=True)
            raise Closed(CloseCode.TRY_AGAIN_LATER, "broker unavailable") from None
        self._control_sub = subscription
        if hello.presence is not None:
            await self.service.set_presence(agent, hello.presence)
        welcome = await self.service.agent_welcome(agent)
        self.send(welcome)
        await self._resume(hello.cursors, [c.id for c in welcome.conversations])
        self._control_pump = asyncio.create_task(self._pump_control())
        self._control_pump.add_done_callback(self._pump_ended)
        async for frame in self.frames(protocol.agent_decoder, protocol.AGENT_TYPES):
            await self._dispatch(frame)

    async def _resume(self, cursors: dict[str, int], owned: list[str]) -> None:
        for conv_id in owned:
            await self.start_delivery(conv_id, cursors.get(conv_id, 0), include_internal=True)
        for conv_id, seq in cursors.items():
            if conv_id in self.deliveries:
                continue
            # A conversation this agent followed but no longer owns (ended, transferred, ticketed while
            # it was away): send what it missed, then nothing more.
            try:
                await self.service.agent_can_see(self.agent, conv_id)
            except ServiceError as exc:
                self.send_error(exc.code, exc.message, conversation_id=conv_id)
                continue
            delivery = await self.start_delivery(conv_id, seq, include_internal=True)
            if conv_id not in owned:
                await self.stop_delivery(delivery)

    async def _dispatch(self, frame: Any) -> None:
        s, a = self.service, self.agent
        match frame:
            case protocol.AgentMessage():
                await self.handle(frame, lambda: self._ack(frame, s.agent_message(
                    a, frame.conversation_id, frame.client_id, frame.text)))
            case protocol.AgentNote():
                await self.handle(frame, lambda: self._ack(frame, s.agent_message(
                    a, frame.conversation_id, frame.client_id, frame.text, internal=True)))
            case protocol.AgentTyping():
                await self.handle(frame, lambda: self._typing(frame))
            case protocol.AgentReceipt():
                await self.handle(frame, lambda: self._receipt(frame))
            case protocol.Accept():
                await self.handle(frame, lambda: self._done(frame, s.accept(a, frame.conversation_id)))
            case protocol.TakeOver():
                await self.handle(frame, lambda: self._done(frame, s.take_over(a, frame.conversation_id)))
            case protocol.Decline():
                await self.handle(frame, lambda: self._done(frame, s.decline(a, frame.conversation_id)))
            case protocol.Transfer():
                await self.handle(frame, lambda: self._done(frame, s.transfer(
                    a, frame.conversation_id, frame.agent_id)))
            case protocol.Convert():
                await self.handle(frame, lambda: self._convert(frame))
            case protocol.Suggest():
                await self.handle(frame, lambda: self._suggest(frame))
            case protocol.AgentEnd():
                await self.handle(frame, lambda: self._done(frame, s.agent_end(
                    a, frame.conversation_id, frame.resolution)))
            case protocol.SetPresence():
                await self.handle(frame, lambda: self._presence(frame))
            case protocol.Resume():
                await self._resume(frame.cursors, [])
                self.send(protocol.Done(ref=frame.ref))
            case protocol.Ping():
                self.send(protocol.Pong(ref=frame.ref))
            case protocol.AgentHello():
                self.send_error(ErrorCode.BAD_FRAME, "hello was already received", ref=frame.ref)

    async def _ack(self, frame: Any, action: Any) -> None:
        kind = "note" if isinstance(frame, protocol.AgentNote) else "agent"
        with metrics.MESSAGE_LATENCY.labels(kind).time():
            ack = await action
        if not ack.duplicate:
            metrics.MESSAGES.labels(kind).inc()
        ack.ref = frame.ref
        self.send(ack)

    async def _done(self, frame: Any, action: Any) -> None:
        await action
        self.send(protocol.Done(ref=frame.ref, conversation_id=getattr(frame, "conversation_id", None)))

    async def _typing(self, frame: protocol.AgentTyping) -> None:
        await self.service.agent_can_see(self.agent, frame.conversation_id)
        await self.service.typing("agent", frame.conversation_id, frame.active, self.agent.name)

    async def _receipt(self, frame: protocol.AgentReceipt) -> None:
        await self.service.agent_can_see(self.agent, frame.conversation_id)
        await self.service.receipt("agent", frame.conversation_id, frame.seq, frame.status)

    async def _convert(self, frame: protocol.Convert) -> None:
        await self.service.agent_can_see(self.agent, frame.conversation_id)
        tickets = self.service.tickets
        if tickets is None:
            raise ServiceError(ErrorCode.UNAVAILABLE, "tickets are not enabled")
        await tickets.convert(frame.conversation_id, reason="agent_converted", actor=self.agent)
        self.send(protocol.Done(ref=frame.ref, conversation_id=frame.conversation_id))

    async def _suggest(self, frame: protocol.Suggest) -> None:
        result = await self.service.suggestions_for(self.agent, frame.conversation_id, frame.text, frame.k)
        result.ref = frame.ref
        self.send(result)

    async def _presence(self, frame: protocol.SetPresence) -> None:
        await self.service.set_presence(self.agent, frame.status)
        self.send(protocol.PresenceNotice(status=frame.status, ref=frame.ref))

    async def _pump_control(self) -> None:
        while True:
            try:
                payload = await self._control_sub.get()
            except SubscriberOverflow:
                self.abort(CloseCode.SLOW_CONSUMER, "slow consumer: reconnect and resume")
                return
            except BrokerGap:
                # Offers or assignments may have been missed: the welcome state is the truth.
                with contextlib.suppress(ServiceError):
                    welcome = await self.service.agent_welcome(self.agent)
                    for offer in welcome.offers:
                        self.send(protocol.Offer(offer=offer))
                    for conv in welcome.conversations:
                        if conv.id not in self.deliveries:
                            self.send(protocol.Assigned(conversation=conv, reason="accept"))
                            await self.start_delivery(conv.id, 0, include_internal=True)
                continue
            except (asyncio.CancelledError, StopAsyncIteration, BrokerClosed):
                return
            parsed = wire.parse(payload)
            if parsed.kind == wire.SESSION_END:
                if parsed.role == self.console_session_id:
                    self.send_error(ErrorCode.UNAUTHORIZED, "the console session has ended: log in again")
                    self.abort(CloseCode.UNAUTHORIZED, "console session ended")
                    return
                continue
            frame = _control.decode(parsed.frame)
            if isinstance(frame, protocol.Assigned):
                self.send(frame)
                await self.start_delivery(frame.conversation.id, 0, include_internal=True)
            elif isinstance(frame, protocol.Unassigned):
                delivery = self.deliveries.get(frame.conversation_id)
                if delivery is not None:
                    await self._catch_up_quietly(delivery)
                    await self.stop_delivery(delivery)
                self.send(frame)
            else:
                self.send(frame)

    async def _watch_session(self) -> None:
        from chatsvc.console.auth import session_alive

        while True:
            await asyncio.sleep(SESSION_CHECK_INTERVAL)
            assert self.console_session_id is not None
            try:
                alive = await session_alive(self.ws, self.console_session_id)
            except Exception:  # noqa: BLE001 - a store outage is not a log-out; the next check decides
                continue
            if not alive:
                self.send_error(ErrorCode.UNAUTHORIZED, "the console session has ended: log in again")
                self.abort(CloseCode.UNAUTHORIZED, "console session ended")
                return

    async def cleanup(self) -> None:
        if self._session_watch is not None:
            self._session_watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._session_watch
        if self._control_pump is not None:
            self._control_pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._control_pump
        if self._control_sub is not None:
            with contextlib.suppress(Exception):
                await self._control_sub.__aexit__(None, None, None)
        if self.session_id is not None:
            await self.service.unregister_session(self.session_id)
