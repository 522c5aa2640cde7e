"""Property-based tests of the websocket protocol against a real server: hypothesis writes programs of
random, mutated and valid frames from a visitor and an agent, sent without waiting for answers (so they
interleave at the server), and checks after each program that

- the server is still up, never closed a socket with 1011 (internal error) and logged no failure;
- every frame it sent validates against the protocol schema and every error code is documented;
- every state change the visitor saw is one the lifecycle allows, and they chain;
- no internal note reached the visitor, and a replay from 0 gives the visitor exactly what it saw live.

Bounded for the test budget: a fixed number of examples, derandomized, no example database
(CHATSVC_FUZZ_EXAMPLES=500 for a deeper run by hand).
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from typing import Any

import httpx
import websockets
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed

from chatsvc.domain.conversation import TRANSITIONS
from chatsvc.ws.protocol import CloseCode, ErrorCode
from tests.security.conftest import Site
from tests.support.server import _VALIDATORS

ALLOWED = {(s.value, t.value) for (s, _), t in TRANSITIONS.items() if s is not t}
ERROR_CODES = {v for k, v in vars(ErrorCode).items() if k.isupper()}
DOCUMENTED_CLOSES = {v for k, v in vars(CloseCode).items() if k.isupper()} - {CloseCode.INTERNAL_ERROR}

texts = st.text(max_size=60) | st.sampled_from(["", " ", "x" * 4001, "<script>alert(1)</script>", "\u202e\u0000"])
small_ints = st.integers(min_value=-3, max_value=40) | st.sampled_from([2**63, -(2**63)])
json_values = st.recursive(st.none() | st.booleans() | small_ints | texts,
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
                           max_leaves=8)
refs = st.none() | st.text(max_size=70)


def visitor_frames() -> st.SearchStrategy[dict[str, Any]]:
    ids = st.sampled_from(["a", "b", "c"]) | st.text(max_size=66)
    return st.one_of(
        st.builds(lambda c, t: {"type": "message", "client_id": c, "text": t}, ids, texts),
        st.builds(lambda a: {"type": "typing", "active": a}, st.booleans()),
        st.builds(lambda s, k: {"type": "receipt", "seq": s, "status": k}, small_ints,
                  st.sampled_from(["delivered", "read", "seen"])),
        st.builds(lambda e: {"type": "request_agent", "email": e}, st.none() | st.sampled_from(["v@example.com", "x"])),
        st.builds(lambda e: {"type": "leave_email", "email": e}, st.sampled_from(["v@example.com", "bad", ""])),
        st.builds(lambda s, a, h: {"type": "feedback", "seq": s, "article_id": a, "helpful": h}, small_ints, texts,
                  st.booleans()),
        st.builds(lambda r, c: {"type": "csat", "rating": r, "comment": c}, st.sampled_from(["good", "bad", "meh"]),
                  st.none() | texts),
        st.just({"type": "end"}),
        st.just({"type": "ping"}),
        st.builds(lambda s: {"type": "hello", "last_seq": s}, small_ints),
    )


def agent_frames(conv: str) -> st.SearchStrategy[dict[str, Any]]:
    convs = st.just(conv) | st.sampled_from([str(uuid.UUID(int=0)), "", "x" * 70])
    ids = st.sampled_from(["n1", "n2", "m1"])
    return st.one_of(
        st.builds(lambda c: {"type": "accept", "conversation_id": c}, convs),
        st.builds(lambda c: {"type": "take_over", "conversation_id": c}, convs),
        st.builds(lambda c: {"type": "decline", "conversation_id": c}, convs),
        st.builds(lambda c, i, t: {"type": "message", "conversation_id": c, "client_id": i, "text": t}, convs, ids,
                  texts),
        st.builds(lambda c, i: {"type": "note", "conversation_id": c, "client_id": i,
                                "text": f"INTERNAL NOTE {i}"}, convs, ids),
        st.builds(lambda c, a: {"type": "typing", "conversation_id": c, "active": a}, convs, st.booleans()),
        st.builds(lambda c, r: {"type": "end", "conversation_id": c, "resolution": r}, convs, st.none() | texts),
        st.builds(lambda c: {"type": "convert", "conversation_id": c}, convs),
        st.builds(lambda c, k: {"type": "suggest", "conversation_id": c, "k": k}, convs, small_ints),
        st.builds(lambda c, s: {"type": "resume", "cursors": {c: s}}, convs, small_ints),
        st.builds(lambda s: {"type": "presence", "status": s}, st.sampled_from(["online", "away", "offline", "busy"])),
    )


def mutated(frames: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[str]:
    """A valid-looking frame, broken one way or another, as the text that goes on the wire."""
    return st.one_of(
        frames.map(json.dumps),
        st.builds(lambda f, k, v: json.dumps({**f, k: v}), frames, st.text(max_size=8), json_values),
        st.builds(lambda f, r: json.dumps({**f, "ref": r}), frames, refs),
        st.builds(lambda f, k: json.dumps({x: y for x, y in f.items() if x != k}), frames,
                  st.sampled_from(["type", "text", "client_id", "conversation_id", "seq"])),
        json_values.map(json.dumps),
        st.text(max_size=40),
    )


def program(conv_placeholder: str = "CONV") -> st.SearchStrategy[list[tuple[str, str]]]:
    step = st.one_of(st.tuples(st.just("visitor"), mutated(visitor_frames())),
                     st.tuples(st.just("agent"), mutated(agent_frames(conv_placeholder))))
    return st.lists(step, min_size=1, max_size=10)


async def collect(ws: Any, validator: Any, sink: list[dict[str, Any]], closes: list[int]) -> None:
    try:
        async for raw in ws:
            frame = json.loads(raw)
            validator.validate(frame)
            sink.append(frame)
    except ConnectionClosed as exc:
        closes.append(exc.rcvd.code if exc.rcvd else -1)


async def run_program(site: Site, steps: list[tuple[str, str]]) -> None:
    v = await websockets.connect(f"{site.ws}/ws/visitor", open_timeout=15)
    a = await websockets.connect(f"{site.ws}/ws/agent", open_timeout=15)
    seen_v: list[dict[str, Any]] = []
    seen_a: list[dict[str, Any]] = []
    closes: list[int] = []
    try:
        await v.send(json.dumps({"type": "hello"}))
        welcome = json.loads(await asyncio.wait_for(v.recv(), 15))
        seen_v.append(welcome)
        conv, token = welcome["conversation"]["id"], welcome["token"]
        await a.send(json.dumps({"type": "hello", "token": site.members["lead"].token, "presence": "away"}))
        tasks = [asyncio.create_task(collect(v, _VALIDATORS["server_to_visitor"], seen_v, closes)),
                 asyncio.create_task(collect(a, _VALIDATORS["server_to_agent"], seen_a, closes))]
        for who, text in steps:
            socket = v if who == "visitor" else a
            try:
                await socket.send(text.replace("CONV", conv))
            except ConnectionClosed:
                pass
        for socket in (v, a):  # let every answer arrive: a ping after the program, answered in order
            try:
                await socket.send(json.dumps({"type": "ping", "ref": "end-of-program"}))
            except ConnectionClosed:
                pass
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while loop.time() < deadline and not all(
                any(f.get("ref") == "end-of-program" for f in seen) or socket.close_code is not None
                for seen, socket in ((seen_v, v), (seen_a, a))):
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)  # events published after the last answer
        await v.close()
        await a.close()
        await asyncio.gather(*tasks)

        assert not [c for c in closes if c not in DOCUMENTED_CLOSES and c not in (-1, 1000)], closes
        for frame in seen_v + seen_a:
            if frame["type"] == "error":
                assert frame["code"] in ERROR_CODES, frame
        events = [f for f in seen_v if f["type"] == "event"]
        assert not [e for e in events if e["kind"] == "note" or "INTERNAL NOTE" in (e.get("text") or "")]
        changes = [(e["data"]["from"], e["data"]["to"]) for e in events if e["kind"] == "state"]
        assert all(change in ALLOWED for change in changes), changes
        assert all(prev[1] == nxt[0] for prev, nxt in zip(changes, changes[1:])), changes
        seqs = [e["seq"] for e in events]
        assert seqs == sorted(set(seqs)), "in order, each once"

        # A replay from 0 is what the visitor saw live (and more, if the socket was closed early).
        again = await websockets.connect(f"{site.ws}/ws/visitor", open_timeout=15)
        try:
            await again.send(json.dumps({"type": "hello", "token": token, "last_seq": 0}))
            replay: list[dict[str, Any]] = []
            while True:
                frame = json.loads(await asyncio.wait_for(again.recv(), 15))
                _VALIDATORS["server_to_visitor"].validate(frame)
                if frame["type"] == "replayed":
                    break
                if frame["type"] == "event":
                    replay.append(frame)
        finally:
            await again.close()
        by_seq = {e["seq"]: e for e in replay}
        assert all(by_seq.get(e["seq"]) == e for e in events), "the replay differs from what was sent live"
        assert not [e for e in replay if e["kind"] == "note"]
    finally:
        for socket in (v, a):
            await socket.close()


@settings(max_examples=int(os.environ.get("CHATSVC_FUZZ_EXAMPLES", "12")), deadline=None, derandomize=True, database=None,
          phases=(Phase.explicit, Phase.generate, Phase.shrink),  # no explain phase: it imports deprecated modules
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(steps=program())
def test_random_frame_programs_break_nothing(site: Site, steps: list[tuple[str, str]]) -> None:
    asyncio.run(run_program(site, steps))
    assert httpx.get(f"{site.http}/healthz", timeout=15).status_code == 200


def test_the_server_logged_no_failure(site: Site) -> None:
    """Runs after the programs: nothing above made the server log an unexpected exception."""
    log = site.server.read_log()
    assert "session failed" not in log and "Traceback" not in log, log[-3000:]
