"""Agents' corrections on resolved tickets become training labels (`chatsvc train --from-store`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatsvc.broker import create_broker
from chatsvc.cli import main
from chatsvc.live.service import AgentRef, ChatService
from chatsvc.settings import Settings
from chatsvc.store import db
from chatsvc.store.tables import tickets
from chatsvc.tickets.service import TicketService, training_examples
from tests.support.server import run_sync

SHIPPED = Path(__file__).parents[2] / "chatsvc" / "classifier" / "data" / "help_center_labels.csv"
LEE = AgentRef("lee", "Lee", "lead", "online")


async def make_tickets(url: str) -> None:
    engine = db.create_engine(url)
    broker = create_broker(None)
    await broker.connect()
    try:
        await db.migrate(engine)
        service = TicketService(ChatService(engine, broker, Settings(database_url=url), secret_key="k"))
        for i, (text, category, priority) in enumerate([
            ("the gate remote stopped opening the garage", "technical", "P2"),
            ("please add dark mode to the resident app", "feature_request", "P4"),
            ("still open: cannot find my invoice", "billing", "P3"),
        ]):
            ticket_id = await service.create(channel="form", subject=None, text=text, customer_name=None,
                                             customer_email=f"c{i}@example.com")
            await service.update_fields(LEE, ticket_id, {"category": category, "priority": priority})
            if i < 2:  # the third stays open: not a label yet
                async with engine.begin() as conn:
                    await conn.execute(tickets.update().where(tickets.c.id == ticket_id).values(status="open"))
                await service.act(LEE, ticket_id, "resolve")
        examples = await training_examples(engine)
        assert sorted((e.text, e.category, e.priority) for e in examples) == [
            ("please add dark mode to the resident app", "feature_request", "P4"),
            ("the gate remote stopped opening the garage", "technical", "P2"),
        ]
    finally:
        await engine.dispose()
        await broker.disconnect()


def test_train_from_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'labels.db'}"
    run_sync(lambda: make_tickets(url))
    out = tmp_path / "models"
    assert main(["train", "--data", str(SHIPPED), "--from-store", "--database-url", url, "--out", str(out),
                 "--cv", "2"]) == 0
    printed = capsys.readouterr().out
    assert "written to" in printed
    card = next(out.rglob("*.json")).read_text()
    assert "store (2 resolved tickets)" in card or "2 resolved tickets" in printed + card
    assert main(["train", "--out", str(out)]) == 2
