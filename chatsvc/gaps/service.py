"""Gap detection as a service: the scheduled job, the writers' actions, and what the API and pages read.

The job runs in every server process every `gaps_assign_interval` seconds and does nothing unless it
holds the lease (a compare-and-set row in `kv`), so with several processes exactly one works at a time
and a crashed holder's lease runs out. Each run copies new inputs, embeds the questions not embedded yet
(stored, so a question is embedded once), then either re-clusters everything in the window (every
`gaps_recluster_interval`) or attaches the new questions to the existing gaps. Clustering runs in a
worker thread: the event loop keeps serving chat meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from chatsvc.gaps import engine as core
from chatsvc.gaps import store
from chatsvc.gaps.embed import Embedder, from_blobs, load_embedder, to_blob
from chatsvc.kb_suggest import analysis
from chatsvc.ops.logs import Outage, every
from chatsvc.store.tables import articles, gap_questions, gaps

log = logging.getLogger("chatsvc.gaps")

WINDOW = timedelta(days=90)  # questions older than this no longer make or feed gaps
PERIOD = timedelta(days=7)  # the trend compares the last 7 days with the 7 before
PER_VISITOR = 3  # distinct questions of one visitor that enter clustering; the rest are attached
COVERED_SHARE = 0.5  # a gap whose questions match an article at least this often shows as covered
COVERAGE_SAMPLE = 200  # most recent questions of a gap re-matched on a coverage check
LEASE_TTL = timedelta(minutes=15)
ANSWERED_SAMPLE = 20_000  # most recent answered questions that measure how answered a topic's neighbourhood is
EXAMPLES = 5
STATUSES = ("open", "covered", "dismissed", "merged")


class GapError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _now() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return "g" + uuid.uuid4().hex[:11]


class GapService:
    def __init__(self, engine: AsyncEngine, kb: Any, settings: Any, *, node: str | None = None,
                 clock: Callable[[], datetime] = _now) -> None:
        self.engine = engine
        self.kb = kb
        self.settings = settings
        self.clock = clock
        self.lease = store.Lease(engine, node or uuid.uuid4().hex[:12])
        self._embedder: Embedder | None = None
        self._task: asyncio.Task[None] | None = None
        self._article_vectors: tuple[Any, list[Any], Any] | None = None  # (kb version, articles, vectors)
        #: Texts this service has embedded (questions and articles): a run with nothing new embeds none,
        #: so the sentence model is never loaded for it.
        self.embedded = 0

    @property
    def embedder(self) -> Embedder:
        """The configured embedder. Choosing it loads nothing: a model loads on its first `encode`."""
        if self._embedder is None:
            self._embedder = load_embedder(getattr(self.settings, "gaps_embedder", "auto") or "auto")
        return self._embedder

    async def _encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed in a worker thread; nothing at all (no model load) for no text."""
        embedder = self.embedder
        if not texts:
            return embedder.encode([])  # an empty matrix of the right width; no embedder loads a model for it
        self.embedded += len(texts)
        return await asyncio.to_thread(embedder.encode, list(texts))

    # ------------------------------------------------------------------ the scheduled job

    @classmethod
    async def started(cls, engine: AsyncEngine, kb: Any, settings: Any, *,
                      clock: Callable[[], datetime] = _now) -> GapService:
        """A service whose scheduled job runs (when CHATSVC_GAPS_ASSIGN_INTERVAL is above 0)."""
        service = cls(engine, kb, settings, clock=clock)
        await service.start()
        return service

    async def start(self) -> None:
        interval = float(getattr(self.settings, "gaps_assign_interval", 0) or 0)
        if interval > 0:
            self._task = asyncio.create_task(self._loop(interval), name="chatsvc-gaps")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self, interval: float) -> None:
        # While the store is down every run fails alike: one warning, one line on recovery (see Outage).
        await every(interval, self.tick, Outage(log, "article-gap run"))

    async def tick(self) -> dict[str, Any]:
        """One scheduled run: a full re-clustering when the last is older than the interval, else attach."""
        now = self.clock()
        async with self.engine.connect() as conn:
            last = await store.kv_get(conn, store.FULL_AT_KEY)
        every = timedelta(seconds=float(getattr(self.settings, "gaps_recluster_interval", 3600)))
        full = last is None or datetime.fromisoformat(last) <= now - every
        return await self.run(full=full)

    async def run(self, *, full: bool, wait: bool = False) -> dict[str, Any]:
        """Ingest, embed, then re-cluster (`full`) or attach; under the lease. With `wait`, wait for it."""
        started = time.perf_counter()
        deadline = time.monotonic() + LEASE_TTL.total_seconds()
        while not await self.lease.claim(self.clock(), LEASE_TTL):
            if not wait or time.monotonic() > deadline:
                return {"mode": "full" if full else "assign", "skipped": "another process is running the job",
                        "questions": 0, "gaps": 0, "noise": 0, "embedder": "", "seconds": 0.0}
            await asyncio.sleep(0.5)
        embedded_before = self.embedded
        try:
            now = self.clock()
            await store.ingest(self.engine, now, now - WINDOW)
            await self._embed_pending(now)
            summary = await (self._recluster(now) if full else self._assign(now))
            await self._coverage(only_stale=True)
            summary["seconds"] = round(time.perf_counter() - started, 2)
            async with self.engine.begin() as conn:
                if full:
                    await store.kv_set(conn, store.FULL_AT_KEY, now.isoformat())
                await store.record_run(conn, {"node": self.lease.node, "started": now.isoformat(),
                                              "finished": self.clock().isoformat(), **summary,
                                              "embedded": self.embedded - embedded_before})
        finally:
            await self.lease.release()
        return summary

    async def _embed_pending(self, now: datetime) -> None:
        embedder = self.embedder
        if not embedder.stable:
            return
        async with self.engine.connect() as conn:
            answered_from = await store.oldest_answered_to_embed(conn, now - WINDOW, ANSWERED_SAMPLE)
        while True:
            async with self.engine.connect() as conn:
                rows = (await conn.execute(select(gap_questions.c.id, gap_questions.c.text).where(
                    gap_questions.c.created_at >= now - WINDOW,
                    (gap_questions.c.embedder.is_(None)) | (gap_questions.c.embedder != embedder.name),
                    (gap_questions.c.reason != store.ANSWERED) | (gap_questions.c.id >= answered_from))
                    .order_by(gap_questions.c.id).limit(2048))).all()
            if not rows:
                return
            vectors = await self._encode([r.text for r in rows])
            async with self.engine.begin() as conn:
                await conn.execute(
                    update(gap_questions).where(gap_questions.c.id == bindparam("row_id"))
                    .values(embedding=bindparam("blob"), embedder=embedder.name),
                    [{"row_id": row.id, "blob": to_blob(vector)} for row, vector in zip(rows, vectors)])

    async def _vectors(self, rows: Sequence[Any]) -> np.ndarray:
        embedder = self.embedder
        if embedder.stable and rows and all(r.embedder == embedder.name and r.embedding for r in rows):
            return from_blobs([r.embedding for r in rows])
        return await self._encode([r.text for r in rows])

    # ------------------------------------------------------------------ full re-clustering

    async def _recluster(self, now: datetime) -> dict[str, Any]:
        rows = await store.window_rows(self.engine, now - WINDOW)
        summary: dict[str, Any] = {"mode": "full", "questions": len(rows), "embedder": self.embedder.name}
        vectors = await self._vectors(rows)
        params = core.params_for(self.embedder.name)
        labels = await asyncio.to_thread(_cluster_rows, rows, vectors, params)
        async with self.engine.connect() as conn:
            known = {r.id: r for r in (await conn.execute(select(gaps))).all()}
        previous = []
        members_before: dict[str, set[int]] = defaultdict(set)
        for row in rows:
            if row.gap_id:
                members_before[_resolve(row.gap_id, known)].add(int(row.id))
        for gap_id, members in members_before.items():
            gap = known.get(gap_id)
            centre = from_blobs([gap.centroid])[0] if gap is not None and gap.centroid and \
                gap.embedder == self.embedder.name else None
            previous.append(core.PreviousTopic(gap_id, frozenset(members), centre))
        k = int(labels.max()) + 1 if len(labels) else 0
        topic_members = [set(int(rows[i].id) for i in np.flatnonzero(labels == c)) for c in range(k)]
        centres = core.centroids(vectors, labels) if k else np.zeros((0, 1), dtype=np.float32)
        matched = core.match_previous(topic_members, centres, previous)
        ids = [matched.get(c) or _new_id() for c in range(k)]
        async with self.engine.begin() as conn:
            for c in range(-1, k):
                positions = np.flatnonzero(labels == c)
                if not len(positions):
                    continue
                question_ids = [int(rows[i].id) for i in positions]
                for start in range(0, len(question_ids), 500):
                    part = question_ids[start:start + 500]
                    await conn.execute(update(gap_questions).where(gap_questions.c.id.in_(part)).values(
                        gap_id=None if c < 0 else ids[c], placed="noise" if c < 0 else "cluster"))
            # Gaps that lost every question keep their row (and their status) but drop out of the lists.
            emptied = [g for g in known if g not in set(ids) and known[g].volume]
            if emptied:
                await conn.execute(update(gaps).where(gaps.c.id.in_(emptied)).values(
                    volume=0, questions=0, current=0, previous=0, impact=0.0, updated_at=now))
        topics = [(ids[c], np.flatnonzero(labels == c)) for c in range(k)]
        await self._describe(rows, vectors, topics, now, relabel=True, known=known)
        summary.update(gaps=k, noise=int((labels < 0).sum()))
        log.info("article gaps re-clustered: %d questions, %d gaps, %d unclustered", len(rows), k,
                 summary["noise"])
        return summary

    async def _describe(self, rows: Sequence[Any], vectors: np.ndarray, topics: Sequence[tuple[str, np.ndarray]],
                        now: datetime, *, relabel: bool, known: dict[str, Any], keep_examples: bool = False) -> None:
        """Figures, label, examples, nearest article and centroid of each topic, written to `gaps`."""
        if not topics:
            return
        conversation_ids = {r.conversation_id for r in rows if r.conversation_id}
        ticket_ids = {int(r.ticket_id) for r in rows if r.ticket_id}
        linked = await store.ticket_priorities(self.engine, conversation_ids, ticket_ids)
        terms = core.distinctive_terms([[rows[i].text for i in positions] for _, positions in topics]) \
            if relabel else [[] for _ in topics]
        article_ids, article_titles, article_vectors = await self._articles()
        answered, answered_weight = np.zeros((0, 0), dtype=np.float32), 1.0
        if self.embedder.stable:
            blobs, answered_weight = await store.answered_blobs(self.engine, now - WINDOW, self.embedder.name,
                                                                ANSWERED_SAMPLE)
            answered = from_blobs(blobs)
        async with self.engine.begin() as conn:
            for (gap_id, positions), topic_terms in zip(topics, terms):
                members = [rows[i] for i in positions]
                asked = []
                for r in members:
                    ticket = linked.get(f"t:{r.ticket_id}") if r.ticket_id else None
                    ticket = ticket or (linked.get(f"c:{r.conversation_id}") if r.conversation_id else None)
                    asked.append(core.Asked(asker=r.visitor_id or f"q{r.id}", created_at=store.when(r.created_at),
                                            priority=ticket.priority if ticket is not None else None))
                fig = core.figures(asked, now, PERIOD)
                centre = core.centroids(vectors[positions], np.zeros(len(positions), dtype=np.int64))[0]
                nearest = core.representatives(vectors[positions], [m.text for m in members], centre, EXAMPLES)
                examples = [int(members[i].id) for i in nearest]
                nearest_id, similarity = None, None
                if len(article_ids) and article_vectors is not None and article_vectors.shape[1] == centre.shape[0]:
                    sims = article_vectors @ centre
                    best = int(np.argmax(sims))
                    nearest_id, similarity = article_ids[best], round(float(sims[best]), 4)
                cohesion = core.cohesion(vectors[positions], centre)
                novelty = core.novelty(similarity, cohesion, core.answered_share(
                    answered, centre, cohesion, len(positions), answered_weight))
                values: dict[str, Any] = {
                    "volume": fig.volume, "questions": fig.questions, "current": fig.current,
                    "previous": fig.previous, "trend": fig.trend, "priority_mix": fig.priority_mix,
                    "impact": round(fig.impact * novelty, 3), "examples": examples, "article_id": nearest_id,
                    "article_similarity": similarity, "centroid": to_blob(centre), "embedder": self.embedder.name,
                    "updated_at": now}
                if keep_examples and gap_id in known and known[gap_id].examples:
                    values.pop("examples")  # a merge keeps the examples the writer saw on the gap kept
                if relabel:
                    fallback = members[nearest[0]].text if nearest else members[0].text
                    values["terms"] = topic_terms
                    values["label"] = core.label_from_terms(topic_terms, fallback)[:300]
                if gap_id in known:
                    await conn.execute(update(gaps).where(gaps.c.id == gap_id).values(**values))
                else:
                    values.setdefault("label", core.label_from_terms([], members[0].text)[:300])
                    values.setdefault("terms", [])
                    await conn.execute(insert(gaps).values(id=gap_id, status="open", created_at=now, **values))

    async def _articles(self) -> tuple[list[str], list[str], np.ndarray | None]:
        """Published articles' ids, titles and vectors (title and opening), cached per help-center version."""
        version = getattr(self.kb, "version", None) if self.kb is not None else None
        if self._article_vectors is not None and self._article_vectors[0] == version and self.embedder.stable:
            _, items, vectors = self._article_vectors
            return [a.id for a in items], [a.title for a in items], vectors
        items = await self.kb.store.published() if self.kb is not None else []
        if not items:
            return [], [], None
        if not self.embedder.stable:
            # TF-IDF + LSA spaces differ from run to run: the nearest article is found by the suggestion
            # engine's own score in `_coverage`, not by vectors.
            return [a.id for a in items], [a.title for a in items], None
        from chatsvc.kb_suggest.markdown import plain_text

        texts = [f"{a.title}. {plain_text(a.body)[:300]}" for a in items]
        vectors = await self._article_vectors_for([a.id for a in items], texts)
        self._article_vectors = (version, items, vectors)
        return [a.id for a in items], [a.title for a in items], vectors

    async def _article_vectors_for(self, ids: Sequence[str], texts: Sequence[str]) -> np.ndarray:
        """Article vectors, stored in `kv` by article and text digest: only a new or edited article is
        embedded, so a process that restarts does not load the sentence model to re-embed the help center."""
        name = self.embedder.name
        async with self.engine.connect() as conn:
            stored = store.decode_article_vectors(await store.kv_get(conn, store.ARTICLE_VECTORS_KEY), name)
        digests = [store.text_digest(t) for t in texts]
        missing = [i for i, (a, d) in enumerate(zip(ids, digests)) if stored.get(a, ("", b""))[0] != d]
        fresh = await self._encode([texts[i] for i in missing])
        kept = {a: stored[a] for a in ids if a in stored}
        for i, vector in zip(missing, fresh):
            kept[ids[i]] = (digests[i], to_blob(vector))
        if missing or len(kept) != len(stored):
            with contextlib.suppress(IntegrityError):  # two processes wrote it at once: either copy will do
                async with self.engine.begin() as conn:
                    await store.kv_set(conn, store.ARTICLE_VECTORS_KEY, store.encode_article_vectors(kept, name))
        return from_blobs([kept[a][1] for a in ids])

    # ------------------------------------------------------------------ attaching new questions

    async def _assign(self, now: datetime) -> dict[str, Any]:
        summary: dict[str, Any] = {"mode": "assign", "embedder": self.embedder.name}
        rows = await store.window_rows(self.engine, now - WINDOW)
        pending = [i for i, r in enumerate(rows) if r.placed is None]
        summary.update(questions=len(pending), gaps=0, noise=0)
        if not pending:
            return summary
        async with self.engine.connect() as conn:
            known = {r.id: r for r in (await conn.execute(select(gaps))).all()}
        vectors = await self._vectors(rows)
        # Centroids from the members as they are now, in this run's vector space.
        gap_ids = sorted({r.gap_id for r in rows if r.gap_id and known.get(r.gap_id) is not None
                          and known[r.gap_id].status in ("open", "dismissed")})
        index = {g: i for i, g in enumerate(gap_ids)}
        member_labels = np.asarray([index.get(r.gap_id, -1) if r.gap_id else -1 for r in rows], dtype=np.int64)
        params = core.params_for(self.embedder.name)
        centres = core.centroids(vectors, member_labels) if gap_ids else np.zeros((0, vectors.shape[1]), np.float32)
        attached, _ = core.attach(vectors[pending], centres, params.attach_similarity)
        touched: set[str] = set()
        placements = []
        for position, label in zip(pending, attached):
            gap_id = gap_ids[label] if label >= 0 else None
            placements.append({"row_id": rows[position].id, "gap": gap_id, "how": "attach" if gap_id else "noise"})
            if gap_id:
                touched.add(gap_id)
        async with self.engine.begin() as conn:
            await conn.execute(update(gap_questions).where(gap_questions.c.id == bindparam("row_id"))
                               .values(gap_id=bindparam("gap"), placed=bindparam("how")), placements)
        summary.update(gaps=len(touched), noise=int((attached < 0).sum()))
        if touched:
            await self._refresh_figures(sorted(touched), now)
        return summary

    async def _refresh_figures(self, gap_ids: Sequence[str], now: datetime, *, keep_examples: bool = False) -> None:
        rows = await store.window_rows(self.engine, now - WINDOW)
        wanted = set(gap_ids)
        rows = [r for r in rows if r.gap_id in wanted]
        if not rows:
            return
        vectors = await self._vectors(rows)
        async with self.engine.connect() as conn:
            known = {r.id: r for r in (await conn.execute(select(gaps).where(gaps.c.id.in_(sorted(wanted))))).all()}
        topics = [(g, np.asarray([i for i, r in enumerate(rows) if r.gap_id == g], dtype=np.int64)) for g in gap_ids]
        await self._describe(rows, vectors, [(g, p) for g, p in topics if len(p)], now, relabel=False, known=known,
                             keep_examples=keep_examples)

    # ------------------------------------------------------------------ coverage

    async def _coverage(self, *, only_stale: bool, gap_ids: Sequence[str] | None = None) -> None:
        """Re-match gaps' questions against the help center as it is now; record the share that matches."""
        if self.kb is None:
            return
        await self.kb.refresh()
        if self.kb.index is None:
            return
        version = str(self.kb.version)
        async with self.engine.connect() as conn:
            checked_version = await store.kv_get(conn, store.COVERAGE_VERSION_KEY)
            query = select(gaps.c.id).where(gaps.c.status == "open", gaps.c.volume > 0)
            if gap_ids is not None:
                query = select(gaps.c.id).where(gaps.c.id.in_(list(gap_ids)))
            elif only_stale and checked_version == version:
                query = query.where(gaps.c.coverage_checked_at.is_(None))
            targets = list((await conn.execute(query)).scalars().all())
            stamps = {r.id: store.when(r.updated_at) for r in (await conn.execute(
                select(articles.c.id, articles.c.updated_at).where(articles.c.status == "published"))).all()}
        index = self.kb.index
        now = self.clock()
        for gap_id in targets:
            async with self.engine.connect() as conn:
                questions = (await conn.execute(select(gap_questions).where(gap_questions.c.gap_id == gap_id)
                                                .order_by(gap_questions.c.id.desc()).limit(COVERAGE_SAMPLE))).all()
            if not questions:
                continue
            answers = await asyncio.to_thread(_match_all, index, [q.text for q in questions])
            matched: dict[int, str | None] = {}
            for question, answer in zip(questions, answers):
                if answer is not None and answer == question.rejected_article_id:
                    # The visitor already said this article did not help; it counts once it was edited since.
                    edited = stamps.get(answer)
                    if edited is None or edited <= store.when(question.created_at):
                        answer = None
                matched[int(question.id)] = answer
            share = sum(1 for a in matched.values() if a) / len(matched)
            async with self.engine.begin() as conn:
                await conn.execute(update(gap_questions).where(gap_questions.c.id == bindparam("row_id"))
                                   .values(matched_article_id=bindparam("answer")),
                                   [{"row_id": q, "answer": a} for q, a in matched.items()])
                await conn.execute(update(gaps).where(gaps.c.id == gap_id).values(
                    covered_share=round(share, 4), coverage_checked_at=now))
        if gap_ids is None:
            async with self.engine.begin() as conn:
                await store.kv_set(conn, store.COVERAGE_VERSION_KEY, version)

    async def check_coverage(self, gap_id: str) -> dict[str, Any]:
        await self._gap(gap_id)
        await self._coverage(only_stale=False, gap_ids=[gap_id])
        return await self.get(gap_id)

    # ------------------------------------------------------------------ writers' actions

    async def _gap(self, gap_id: str) -> Any:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(gaps).where(gaps.c.id == gap_id))).first()
        if row is None:
            raise GapError(404, "not_found", f"no gap {gap_id!r}")
        return row

    async def set_status(self, gap_id: str, status: str, actor_name: str) -> dict[str, Any]:
        row = await self._gap(gap_id)
        if row.status == "merged":
            raise GapError(409, "merged", f"gap {gap_id!r} was merged into {row.merged_into!r}")
        async with self.engine.begin() as conn:
            await conn.execute(update(gaps).where(gaps.c.id == gap_id).values(
                status=status, status_by=actor_name, updated_at=self.clock()))
        return await self.get(gap_id)

    async def merge(self, source_id: str, target_id: str, actor_name: str) -> dict[str, Any]:
        """Fold `source` into `target`: its questions move, it keeps pointing at the target for later runs."""
        if source_id == target_id:
            raise GapError(400, "bad_request", "a gap cannot be merged into itself")
        source, target = await self._gap(source_id), await self._gap(target_id)
        for row in (source, target):
            if row.status == "merged":
                raise GapError(409, "merged", f"gap {row.id!r} was already merged into {row.merged_into!r}")
        now = self.clock()
        async with self.engine.begin() as conn:
            await conn.execute(update(gap_questions).where(gap_questions.c.gap_id == source_id)
                               .values(gap_id=target_id))
            await conn.execute(update(gaps).where(gaps.c.id == source_id).values(
                status="merged", merged_into=target_id, status_by=actor_name, volume=0, questions=0, current=0,
                previous=0, impact=0.0, updated_at=now))
            if target.draft_article_id is None and source.draft_article_id is not None:
                await conn.execute(update(gaps).where(gaps.c.id == target_id)
                                   .values(draft_article_id=source.draft_article_id))
        await self._refresh_figures([target_id], now, keep_examples=True)
        return await self.get(target_id)

    async def draft(self, gap_id: str, actor_name: str) -> dict[str, Any]:
        """A draft article prefilled from the gap: a title, the questions as asked, the agents' replies."""
        gap = await self.get(gap_id, questions=50)
        if gap["draft_article"] is not None:
            return gap
        from chatsvc.kb_suggest.articles import Article

        title = _draft_title(gap)
        lines = ["<!-- Draft from an article gap: rewrite the answer below, then publish. -->", "",
                 "## Answer", "", "_Write the answer here._", "", "## Questions visitors asked", ""]
        seen: set[str] = set()
        for question in gap["questions"]:
            key = core.text_key(question["text"])
            if key and key not in seen:
                seen.add(key)
                lines.append(f"- {_one_line(question['text'])}")
            if len(seen) >= 15:
                break
        replies = await self._agent_replies([t["id"] for t in gap["tickets"]])
        if replies:
            lines += ["", "## What agents answered", ""]
            for ticket_id, text in replies[:10]:
                lines.append(f"> {_one_line(text)} (ticket #{ticket_id})")
                lines.append("")
        article_id = f"gap-{gap_id}"[:64]
        article = Article(id=article_id, title=title, body="\n".join(lines).rstrip() + "\n",
                          tags=[t for t in gap["terms"][:5] if len(t) <= 40], status="draft")
        now = self.clock()
        if await self.kb.store.get(article_id) is None:
            await self.kb.store.save(article, now)
        async with self.engine.begin() as conn:
            await conn.execute(update(gaps).where(gaps.c.id == gap_id).values(
                draft_article_id=article_id, status_by=actor_name, updated_at=now))
        return await self.get(gap_id)

    async def _agent_replies(self, ticket_ids: Sequence[int]) -> list[tuple[int, str]]:
        if not ticket_ids:
            return []
        from chatsvc.store.tables import ticket_entries

        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(ticket_entries.c.ticket_id, ticket_entries.c.text).where(
                ticket_entries.c.ticket_id.in_(list(ticket_ids)), ticket_entries.c.role == "agent",
                ticket_entries.c.internal.is_(False), ticket_entries.c.kind == "reply")
                .order_by(ticket_entries.c.id))).all()
        return [(int(r.ticket_id), r.text) for r in rows if (r.text or "").strip()]

    async def publish_draft(self, gap_id: str) -> dict[str, Any]:
        """Publish the gap's article and re-match its questions at once (this process's index first)."""
        gap = await self._gap(gap_id)
        if not gap.draft_article_id:
            raise GapError(409, "no_draft", "create the article first")
        if not await self.kb.store.set_status(gap.draft_article_id, "published", self.clock()):
            raise GapError(404, "not_found", f"the gap's article {gap.draft_article_id!r} no longer exists")
        return await self.check_coverage(gap_id)

    # ------------------------------------------------------------------ reading

    async def list(self, *, status: str, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        query = select(gaps)
        if status == "open":
            query = query.where(gaps.c.status == "open", gaps.c.volume > 0,
                                (gaps.c.covered_share.is_(None)) | (gaps.c.covered_share < COVERED_SHARE))
        elif status == "covered":
            query = query.where(gaps.c.status == "open", gaps.c.covered_share >= COVERED_SHARE)
        elif status in ("dismissed", "merged"):
            query = query.where(gaps.c.status == status)
        async with self.engine.connect() as conn:
            total = int((await conn.execute(select(func.count()).select_from(query.subquery()))).scalar_one())
            rows = (await conn.execute(query.order_by(gaps.c.impact.desc(), gaps.c.volume.desc(), gaps.c.id)
                                       .limit(limit).offset(offset))).all()
        return [await self._out(r) for r in rows], total

    async def get(self, gap_id: str, *, questions: int = 100) -> dict[str, Any]:
        row = await self._gap(gap_id)
        out = await self._out(row)
        async with self.engine.connect() as conn:
            members = (await conn.execute(select(gap_questions).where(gap_questions.c.gap_id == gap_id)
                                          .order_by(gap_questions.c.created_at.desc(), gap_questions.c.id.desc())
                                          .limit(questions))).all()
        out["questions"] = [_question(q) for q in members]
        conversation_ids = {q.conversation_id for q in members if q.conversation_id}
        ticket_ids = {int(q.ticket_id) for q in members if q.ticket_id}
        linked = await store.ticket_priorities(self.engine, conversation_ids, ticket_ids)
        unique = {r.id: r for r in linked.values()}
        out["tickets"] = [{"id": int(t.id), "subject": t.subject, "status": t.status, "priority": t.priority}
                          for t in sorted(unique.values(), key=lambda t: t.id)]
        return out

    async def _out(self, row: Any) -> dict[str, Any]:
        async with self.engine.connect() as conn:
            example_rows = {q.id: q for q in (await conn.execute(select(gap_questions).where(
                gap_questions.c.id.in_([int(i) for i in (row.examples or [])] or [-1])))).all()}
            wanted = [a for a in (row.article_id, row.draft_article_id) if a]
            article_rows = {a.id: a for a in (await conn.execute(select(
                articles.c.id, articles.c.title, articles.c.slug, articles.c.status).where(
                articles.c.id.in_(wanted or ["-"])))).all()}
        nearest = article_rows.get(row.article_id) if row.article_id else None
        draft = article_rows.get(row.draft_article_id) if row.draft_article_id else None
        update_similarity = _update_similarity(row.embedder)
        action = "update" if nearest is not None and (row.article_similarity or 0) >= update_similarity else "write"
        status = row.status
        if status == "open" and row.covered_share is not None and row.covered_share >= COVERED_SHARE:
            status = "covered"
        base = self.settings.base_url if self.settings is not None else ""
        return {
            "id": row.id, "label": row.label, "terms": list(row.terms or []), "status": status,
            "merged_into": row.merged_into, "volume": row.volume, "questions_count": row.questions,
            "current": row.current, "previous": row.previous, "trend": row.trend,
            "priority_mix": dict(row.priority_mix or {}), "impact": row.impact, "action": action,
            "nearest_article": None if nearest is None else {
                "id": nearest.id, "title": nearest.title, "url": f"{base}/help/{nearest.slug}",
                "similarity": row.article_similarity},
            "draft_article": None if draft is None else {"id": draft.id, "title": draft.title, "status": draft.status},
            "covered_share": row.covered_share,
            "coverage_checked_at": row.coverage_checked_at.isoformat() if row.coverage_checked_at else None,
            "examples": [_question(example_rows[int(i)]) for i in (row.examples or []) if int(i) in example_rows],
            "created_at": store.when(row.created_at).isoformat(), "updated_at": store.when(row.updated_at).isoformat(),
        }


def _update_similarity(embedder: str | None) -> float:
    """Cosine from which the nearest article is said to need an update rather than a new article."""
    return 0.6 if embedder == "minilm" else 0.45


def _resolve(gap_id: str, known: dict[str, Any]) -> str:
    """Follow merges: a question still filed under a merged gap belongs to the gap it was merged into."""
    seen = set()
    while gap_id in known and known[gap_id].status == "merged" and known[gap_id].merged_into and gap_id not in seen:
        seen.add(gap_id)
        gap_id = known[gap_id].merged_into
    return gap_id


def _cluster_rows(rows: Sequence[Any], vectors: np.ndarray, params: core.ClusterParams) -> np.ndarray:
    """Topics of every row: one visitor's repeats and floods enter clustering a few times only, then attach."""
    keys = [core.text_key(r.text) for r in rows]
    per_visitor: dict[str, int] = defaultdict(int)
    seen_pairs: set[tuple[str, str]] = set()
    core_rows = []
    for i in sorted(range(len(rows)), key=lambda i: rows[i].created_at, reverse=True):
        visitor = rows[i].visitor_id
        if visitor:
            pair = (visitor, keys[i])
            if pair in seen_pairs or per_visitor[visitor] >= PER_VISITOR:
                continue
            seen_pairs.add(pair)
            per_visitor[visitor] += 1
        core_rows.append(i)
    core_rows.sort()
    labels = np.full(len(rows), core.NOISE, dtype=np.int64)
    if not core_rows:
        return labels
    chosen = np.asarray(core_rows, dtype=np.int64)
    inner = core.cluster(vectors[chosen], [keys[i] for i in chosen], params)
    labels[chosen] = inner
    if inner.max() >= 0:
        rest = np.setdiff1d(np.arange(len(rows)), chosen)
        centres = core.centroids(vectors[chosen], inner)
        attached, _ = core.attach(vectors[rest], centres, params.attach_similarity)
        labels[rest] = attached
    return labels


def _match_all(index: Any, texts: Sequence[str]) -> list[str | None]:
    out: list[str | None] = []
    for text in texts:
        try:
            result = index.suggest(text, 1)
        except ValueError:
            out.append(None)
            continue
        out.append(result.matches[0].article_id if result.matches and not result.no_match else None)
    return out


def _question(row: Any) -> dict[str, Any]:
    return {"id": int(row.id), "text": row.text, "reason": row.reason, "locale": row.locale,
            "created_at": store.when(row.created_at).isoformat(), "conversation_id": row.conversation_id,
            "ticket_id": int(row.ticket_id) if row.ticket_id else None, "matched_article_id": row.matched_article_id}


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500]


def _draft_title(gap: dict[str, Any]) -> str:
    """The representative question, as a title: the gap's nearest example, else its terms."""
    examples = gap.get("examples") or []
    if examples:
        text = _one_line(examples[0]["text"]).rstrip("?!. ")
        words = analysis.words(analysis.normalize(text))
        if 2 <= len(words) <= 14:
            return (text[:1].upper() + text[1:])[:200]
    terms = gap.get("terms") or []
    return (" ".join(terms[:3]).capitalize() or "New article")[:200]
