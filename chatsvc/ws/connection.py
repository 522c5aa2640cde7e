"""What every websocket session shares: one writer with a bounded queue, frame intake with size and rate
limits, and per-conversation delivery that is gap-free, in order and exactly once.

Delivery rule: a session subscribes to a conversation's channel *before* it replays the stored events
after the client's cursor, and drops any live event whose sequence number it has already sent. When a live
event arrives ahead of the next expected number, or the broker reports a gap, the session reads the
missing events from the database instead of hoping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from chatsvc.broker import BrokerUnavailable, Subscription
from chatsvc.live import wire
from chatsvc.live.service import ChatService, ServiceError
from chatsvc.ops import metrics
from chatsvc.ops.logs import conversation_id_var
from chatsvc.ws import protocol
from chatsvc.ws.protocol import CloseCode, ErrorCode, FrameError

log = logging.getLogger("chatsvc.ws")

HELLO_TIMEOUT = 10.0


class Closed(Exception):
    """The session is over; `code` is what the client was told."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class TokenBucket:
    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.clock = clock
        self.stamp = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Delivery:
    """One conversation's stream into one session."""

    def __init__(self, conversation_id: str, sent_seq: int, include_internal: bool) -> None:
        self.conversation_id = conversation_id
        self.sent_seq = sent_seq
        self.include_internal = include_internal
        self.subscription: Subscription | None = None
        # A catch-up from the database is running (`pump`); live events meanwhile are not sent but
        # remembered by their highest number (`seen`), so it reads again until it has them.
        self.catching_up = False
        self.seen = 0
        self.pump: asyncio.Task[None] | None = None


class Connection:
    role: str = "visitor"

    def __init__(self, websocket: WebSocket, service: ChatService, registry: set[Connection]) -> None:
        self.ws = websocket
        self.service = service
        self.settings = service.settings
        self.registry = registry
        self.outbox: asyncio.Queue[str] = asyncio.Queue(maxsize=self.settings.subscriber_queue)
        self.bucket = TokenBucket(self.settings.rate_per_second, self.settings.rate_burst)
        self.strikes = 0
        self.deliveries: dict[str, Delivery] = {}
        self.closing: Closed | None = None
        self._writer: asyncio.Task[None] | None = None
        self._sending = False  # the writer holds a frame it took from the outbox
        self._main: asyncio.Task[Any] | None = None
        self.finished = asyncio.Event()  # set once the socket is closed and the session torn down

    # ------------------------------------------------------------- output

    def send(self, frame: msgspec.Struct) -> None:
        self.send_raw(protocol.encode(frame))

    def send_raw(self, data: bytes) -> None:
        if self.closing is not None:
            return
        try:
            self.outbox.put_nowait(data.decode())
        except asyncio.QueueFull:
            self.abort(CloseCode.SLOW_CONSUMER, "slow consumer: reconnect and resume")

    async def send_replay(self, frame: msgspec.Struct) -> None:
        """Replayed history waits for room in the queue instead of counting as a slow consumer."""
        if self.closing is None:
            await self.outbox.put(protocol.encode(frame).decode())

    def send_error(self, code: str, message: str, *, ref: str | None = None,
                   conversation_id: str | None = None, retryable: bool = False) -> None:
        self.send(protocol.Error(code=code, message=message, ref=ref, conversation_id=conversation_id,
                                 retryable=retryable))

    def abort(self, code: int, reason: str) -> None:
        """End the session from any task: the main loop closes the socket with `code`."""
        if self.closing is None:
            self.closing = Closed(code, reason)
            if self._main is not None and self._main is not asyncio.current_task():
                self._main.cancel()

    async def _write_forever(self) -> None:
        while True:
            text = await self.outbox.get()
            self._sending = True
            try:
                await self.ws.send_text(text)
            finally:
                self._sending = False
                self.outbox.task_done()

    # ------------------------------------------------------------- input

    async def receive_text(self) -> str:
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        text = message.get("text")
        if text is None:
            raise Closed(CloseCode.UNSUPPORTED_DATA, "binary frames are not part of the protocol")
        if len(text) > self.settings.max_frame_bytes and len(text.encode()) > self.settings.max_frame_bytes:
            raise Closed(CloseCode.MESSAGE_TOO_BIG, f"frames are limited to {self.settings.max_frame_bytes} bytes")
        return text

    def admit(self) -> bool:
        """Rate limit: an over-limit frame is refused with an error; a client that keeps flooding is closed."""
        if self.bucket.take():
            self.strikes = max(0, self.strikes - 1)
            return True
        self.strikes += 1
        metrics.RATE_LIMITED.labels("frame").inc()
        if self.strikes > self.settings.rate_burst:
            raise Closed(CloseCode.FLOOD, "too many frames")
        self.send_error(ErrorCode.RATE_LIMITED, "too many frames; slow down")
        return False

    # ------------------------------------------------------------- lifecycle

    async def run(self) -> None:
        self.registry.add(self)
        self._main = asyncio.current_task()
        code, reason = CloseCode.NORMAL, ""
        metrics.WS_OPENED.labels(self.role).inc()
        metrics.WS_OPEN.labels(self.role).inc()
        try:
            self._writer = asyncio.create_task(self._write_forever())
            await self.serve()
        except Closed as exc:
            code, reason = exc.code, exc.reason
        except WebSocketDisconnect:
            code = -1
        except asyncio.CancelledError:
            if self.closing is None:
                raise
            code, reason = self.closing.code, self.closing.reason
        except Exception:
            log.exception("session failed")
            code, reason = CloseCode.INTERNAL_ERROR, "internal error"
        finally:
            self._main = None  # tearing down: a late abort (a drain) must not cancel the cleanup
            try:
                await self._teardown(code, reason)
            finally:
                self.registry.discard(self)
                self.finished.set()
                metrics.WS_OPEN.labels(self.role).dec()
                metrics.WS_CLOSED.labels(self.role, "client" if code == -1 else str(code)).inc()
                log.debug("%s session ended (%s)", self.role, "client left" if code == -1 else code)

    async def _teardown(self, code: int, reason: str) -> None:
        for delivery in list(self.deliveries.values()):
            await self.stop_delivery(delivery)
        await self.cleanup()
        if code != CloseCode.SLOW_CONSUMER and self._writer is not None and self.ws.client_state == WebSocketState.CONNECTED:
            # Let queued frames (an error explaining the close, say) go out first.
            if not self.outbox.empty() or self._sending:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(2.0):
                        await self.outbox.join()
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._writer
        if code != -1 and self.ws.client_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await self.ws.close(code, reason[:120])

    async def serve(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    async def cleanup(self) -> None:
        """Hook for subclasses: release what the session registered."""

    async def first_frame(self, decoder: msgspec.json.Decoder[Any], types: frozenset[str]) -> Any:
        try:
            async with asyncio.timeout(HELLO_TIMEOUT):  # no task of its own, unlike wait_for
                text = await self.receive_text()
        except TimeoutError:
            raise Closed(CloseCode.HELLO_REQUIRED, "send hello first") from None
        try:
            frame = protocol.decode(text, decoder, types)
        except FrameError as exc:
            self.send_error(exc.code, exc.message, ref=exc.ref)
            raise Closed(CloseCode.HELLO_REQUIRED, "the first frame must be a valid hello") from None
        if frame.__struct_config__.tag != "hello":
            self.send_error(ErrorCode.HELLO_REQUIRED, "the first frame must be hello", ref=frame.ref)
            raise Closed(CloseCode.HELLO_REQUIRED, "the first frame must be hello")
        if frame.v > protocol.PROTOCOL_LEVEL or frame.v < 1:
            self.send_error(ErrorCode.UNSUPPORTED_VERSION,
                            f"this server speaks protocol levels 1..{protocol.PROTOCOL_LEVEL}", ref=frame.ref)
        return frame

    async def frames(self, decoder: msgspec.json.Decoder[Any], types: frozenset[str]):  # type: ignore[no-untyped-def]
        """Decoded, admitted frames; malformed ones are answered with an error and skipped."""
        frames_seen = metrics.WS_FRAMES.labels(self.role)
        while True:
            text = await self.receive_text()
            frames_seen.inc()
            if not self.admit():
                continue
            try:
                yield protocol.decode(text, decoder, types)
            except FrameError as exc:
                self.send_error(exc.code, exc.message, ref=exc.ref)

    async def handle(self, frame: Any, command: Callable[[], Any]) -> None:
        """Run one command; a ServiceError becomes an error frame and the session goes on."""
        if getattr(frame, "conversation_id", None):
            conversation_id_var.set(frame.conversation_id)  # on this command's log lines
        try:
            await command()
        except ServiceError as exc:
            self.send_error(exc.code, exc.message, ref=frame.ref, conversation_id=exc.conversation_id,
                            retryable=exc.retryable)
        except (PoolTimeout, DBAPIError, OSError) as exc:
            # A read outside a transaction found the store down or its pool exhausted: the command can be
            # retried, the session is fine.
            log.warning("store unavailable for %s: %s", type(frame).__name__, exc.__class__.__name__)
            self.send_error(ErrorCode.UNAVAILABLE, "the store is unavailable; retry", ref=frame.ref,
                            retryable=True)

    # ------------------------------------------------------------- delivery

    async def start_delivery(self, conversation_id: str, after_seq: int, *, include_internal: bool) -> Delivery:
        if conversation_id in self.deliveries:
            return self.deliveries[conversation_id]
        delivery = Delivery(conversation_id, after_seq, include_internal)
        self.deliveries[conversation_id] = delivery
        subscription = self.service.broker.subscribe(wire.conv_channel(conversation_id),
                                                     maxsize=self.settings.subscriber_queue)
        try:
            await subscription.__aenter__()
        except BrokerUnavailable:
            self.deliveries.pop(conversation_id, None)
            self.send_error(ErrorCode.UNAVAILABLE, "live delivery is unavailable; reconnect shortly", retryable=True)
            raise Closed(CloseCode.TRY_AGAIN_LATER, "broker unavailable") from None
        delivery.subscription = subscription
        # Subscribed before reading: whatever is published from now on reaches the listener, and what was
        # stored before is in the database. Live events during the replay only raise `seen`.
        delivery.catching_up = True
        subscription.listen(lambda payload: self._live(delivery, payload))
        try:
            await self._catch_up_until_current(delivery)
        finally:
            delivery.catching_up = False
        self.send(protocol.Replayed(conversation_id=conversation_id, last_seq=delivery.sent_seq))
        return delivery

    def _live(self, delivery: Delivery, payload: bytes | None) -> None:
        """A payload from the conversation's channel, handed over as it arrives (no queue, no task): the
        next event in order goes straight to the socket's outbox; anything ahead of it, or a gap the broker
        reports, starts a catch-up from the database."""
        if payload is None:
            # Something may have been missed: read once more, even if a catch-up is running already.
            delivery.seen = max(delivery.seen, delivery.sent_seq + 1)
            self._catch_up_later(delivery)
            return
        item = wire.parse(payload)
        if item.kind == wire.EVENT:
            if item.seq <= delivery.sent_seq:
                return
            if delivery.catching_up:
                delivery.seen = max(delivery.seen, item.seq)
                return
            if item.internal and not delivery.include_internal:
                if item.seq == delivery.sent_seq + 1:
                    delivery.sent_seq = item.seq
                return
            if item.seq == delivery.sent_seq + 1:
                self.send_raw(item.frame)
                delivery.sent_seq = item.seq
            else:
                delivery.seen = max(delivery.seen, item.seq)
                self._catch_up_later(delivery)
        elif item.kind == wire.NOTICE and item.role != self.role:
            self.send_raw(item.frame)

    def _catch_up_later(self, delivery: Delivery) -> None:
        if delivery.catching_up or self.deliveries.get(delivery.conversation_id) is not delivery:
            return
        delivery.catching_up = True
        delivery.pump = asyncio.create_task(self._catch_up_task(delivery))
        delivery.pump.add_done_callback(self._pump_ended)

    async def _catch_up_task(self, delivery: Delivery) -> None:
        try:
            await self._catch_up_until_current(delivery)
        except ServiceError:
            log.warning("catch-up of %s deferred: store unavailable", delivery.conversation_id)
        finally:
            delivery.catching_up = False

    async def _catch_up_until_current(self, delivery: Delivery) -> None:
        await self.catch_up(delivery)
        while delivery.seen > delivery.sent_seq:  # events went live while it read
            before = delivery.sent_seq
            await self.catch_up(delivery)
            if delivery.sent_seq == before:  # not visible to this reader (yet): the next event retries
                break

    def _pump_ended(self, task: asyncio.Task[None]) -> None:
        """A delivery task that fails unexpectedly ends the session, so the client reconnects and resumes."""
        if not task.cancelled() and task.exception() is not None:
            log.error("delivery failed", exc_info=task.exception())
            self.abort(CloseCode.INTERNAL_ERROR, "delivery failed; reconnect and resume")

    async def stop_delivery(self, delivery: Delivery) -> None:
        self.deliveries.pop(delivery.conversation_id, None)
        if delivery.pump is not None and delivery.pump is not asyncio.current_task():
            delivery.pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await delivery.pump
        if delivery.subscription is not None:
            with contextlib.suppress(Exception):
                await delivery.subscription.__aexit__(None, None, None)
            delivery.subscription = None

    async def catch_up(self, delivery: Delivery) -> None:
        missed = await self.service.replay(delivery.conversation_id, delivery.sent_seq,
                                           include_internal=delivery.include_internal)
        for event in missed:
            if event.seq <= delivery.sent_seq:  # another catch-up of this delivery got there first
                continue
            await self.send_replay(event)
            delivery.sent_seq = event.seq

    async def _catch_up_quietly(self, delivery: Delivery) -> None:
        try:
            await self.catch_up(delivery)
        except ServiceError:
            log.warning("catch-up of %s deferred: store unavailable", delivery.conversation_id)
