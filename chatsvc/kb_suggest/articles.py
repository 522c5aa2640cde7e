"""Help-center articles and their two file formats: a folder of Markdown files, or JSON Lines.

A folder holds one `*.md` file per article (searched recursively), with YAML front matter::

    ---
    id: reset-password
    title: Reset a forgotten password
    tags: [login, password]
    locale: en
    slug: reset-password
    status: published
    ---
    Markdown body...

A `.jsonl` file holds one object per line with at least `id`, `title` and `body` (`tags`, `locale`,
`slug`, `status` and `url` optional). Loading never stops at the first bad file or line: every problem
is reported with its file and line, and everything else loads.
"""

from __future__ import annotations

import dataclasses
import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

ArticleStatus = Literal["draft", "published"]
STATUSES: tuple[str, ...] = ("draft", "published")

# Column sizes of the articles table, so that anything loaded from a file also fits the database.
MAX_ID_CHARS = 64
MAX_TITLE_CHARS = 300
MAX_SLUG_CHARS = 200
MAX_LOCALE_CHARS = 16

_SAFE_FILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SLUG_DROP_RE = re.compile(r"[^\w\s-]", re.UNICODE)
_SLUG_JOIN_RE = re.compile(r"[\s_-]+")
# Ids and slugs end up in URLs, HTML attributes and log lines: letters, digits and a few safe marks.
_ID_RE = re.compile(r"[\w.:@+~-]+", re.UNICODE)
_SLUG_RE = re.compile(r"[\w.~-]+", re.UNICODE)


def make_slug(title: str) -> str:
    """URL slug of a title: "Reset a forgotten password!" -> "reset-a-forgotten-password"."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii")
    base = ascii_title if ascii_title.strip() else title
    slug = _SLUG_JOIN_RE.sub("-", _SLUG_DROP_RE.sub("", base).strip().lower()).strip("-")
    return slug[:MAX_SLUG_CHARS].rstrip("-") or "article"


@dataclass(slots=True)
class Article:
    """One help-center article. `body` is Markdown; an empty `slug` is derived from the title.

    Files that do not say otherwise load as `published`: a file of articles is a help center to show.
    """

    id: str
    title: str
    body: str
    tags: list[str] = field(default_factory=list)
    locale: str = "en"
    slug: str = ""
    status: ArticleStatus = "published"
    url: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            raise ValueError("article id must be a non-empty string")
        if not _ID_RE.fullmatch(self.id):
            raise ValueError(f"article id {self.id!r} may contain only letters, digits and . : @ + ~ - _")
        if len(self.id) > MAX_ID_CHARS:
            raise ValueError(f"article id {self.id[:20]!r}... is longer than {MAX_ID_CHARS} characters")
        if not isinstance(self.title, str) or not self.title.strip():
            raise ValueError(f"article {self.id!r}: title must be a non-empty string")
        if len(self.title) > MAX_TITLE_CHARS:
            raise ValueError(f"article {self.id!r}: title is longer than {MAX_TITLE_CHARS} characters")
        if not isinstance(self.body, str):
            raise ValueError(f"article {self.id!r}: body must be a string")
        if "\r" in self.body:  # one line ending everywhere, as in the Markdown files
            self.body = self.body.replace("\r\n", "\n").replace("\r", "\n")
        if not isinstance(self.tags, list) or not all(isinstance(t, str) for t in self.tags):
            raise ValueError(f"article {self.id!r}: tags must be a list of strings")
        if not isinstance(self.locale, str) or not self.locale or len(self.locale) > MAX_LOCALE_CHARS:
            raise ValueError(f"article {self.id!r}: locale must be a short non-empty string such as 'en'")
        if self.status not in STATUSES:
            raise ValueError(f"article {self.id!r}: status must be 'draft' or 'published', not {self.status!r}")
        if not isinstance(self.slug, str):
            raise ValueError(f"article {self.id!r}: slug must be a string")
        if not self.slug:
            self.slug = make_slug(self.title)
        if not _SLUG_RE.fullmatch(self.slug):
            raise ValueError(f"article {self.id!r}: slug {self.slug!r} may contain only letters, digits and . ~ - _")
        if len(self.slug) > MAX_SLUG_CHARS:
            raise ValueError(f"article {self.id!r}: slug is longer than {MAX_SLUG_CHARS} characters")
        if self.url is not None and not isinstance(self.url, str):
            raise ValueError(f"article {self.id!r}: url must be a string")

    @property
    def published(self) -> bool:
        return self.status == "published"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if data["url"] is None:
            del data["url"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Article:
        """Build an article from a JSON object or front matter; unknown keys are ignored."""
        missing = [key for key in ("id", "title", "body") if key not in data]
        if missing:
            raise ValueError(f"missing {', '.join(repr(m) for m in missing)}")
        tags = data.get("tags") or []
        if isinstance(tags, str):
            tags = [t.strip() for t in tags.split(",") if t.strip()]
        article_id = data["id"]
        if isinstance(article_id, int) and not isinstance(article_id, bool):
            article_id = str(article_id)  # YAML reads `id: 42` as a number
        return cls(
            id=article_id,
            title=data["title"],
            body=data["body"] if data["body"] is not None else "",
            tags=list(tags) if isinstance(tags, (list, tuple)) else tags,
            locale=data.get("locale") or "en",
            slug=data.get("slug") or "",
            status=data.get("status") or "published",
            url=data.get("url"),
        )


@dataclass(frozen=True, slots=True)
class LoadProblem:
    """A file or line that could not be loaded; `line` is 1-based, None when the whole file is bad."""

    source: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line is not None else self.source
        return f"{where}: {self.message}"


@dataclass(frozen=True, slots=True)
class ArticleDiff:
    """How a new set of articles differs from an old one, by id (each list sorted)."""

    added: list[str]
    updated: list[str]
    unchanged: list[str]
    removed: list[str]

    def summary(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.updated)} updated, "
            f"{len(self.unchanged)} unchanged, {len(self.removed)} removed"
        )


def load_articles(path: str | Path) -> tuple[list[Article], list[LoadProblem]]:
    """Load articles from a folder of Markdown files, one Markdown file, or a `.jsonl` file.

    Returns the articles that loaded and the problems found (a bad file or line, a duplicate id: the
    first one wins). Raises FileNotFoundError when the path does not exist.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"no such file or folder: {root}")
    if root.is_dir():
        articles: list[Article] = []
        problems: list[LoadProblem] = []
        first_file: dict[str, Path] = {}
        for file in sorted(p for p in root.rglob("*.md") if p.is_file()):
            article, problem = _load_markdown_file(file)
            if problem is not None:
                problems.append(problem)
            elif article is not None and article.id in first_file:
                message = f"duplicate id {article.id!r} (first in {first_file[article.id]}); skipped"
                problems.append(LoadProblem(str(file), 1, message))
            elif article is not None:
                first_file[article.id] = file
                articles.append(article)
        return articles, problems
    if root.suffix.lower() == ".jsonl":
        return _load_jsonl(root)
    article, problem = _load_markdown_file(root)
    return ([article] if article else []), ([problem] if problem else [])


def _load_markdown_file(file: Path) -> tuple[Article | None, LoadProblem | None]:
    import frontmatter
    import yaml

    source = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return None, LoadProblem(source, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})")
    except OSError as exc:
        return None, LoadProblem(source, None, f"cannot read: {exc.strerror or exc}")
    try:
        post = frontmatter.loads(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        # python-frontmatter hands the parser the text after `---` including its newline, so the
        # parser's 0-based line is one less than the file's 1-based line.
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return None, LoadProblem(source, line, f"front matter is not valid YAML: {problem}")
    except Exception as exc:  # noqa: BLE001 - python-frontmatter raises plain exceptions for odd delimiters
        return None, LoadProblem(source, 1, f"cannot read front matter: {exc}")
    meta = dict(post.metadata)
    if not meta:
        return None, LoadProblem(source, 1, "no front matter (expected a '---' block with id and title)")
    meta.setdefault("id", file.stem)
    meta["body"] = post.content.strip()
    try:
        return Article.from_dict(meta), None
    except (ValueError, TypeError) as exc:
        return None, LoadProblem(source, 1, f"invalid front matter: {exc}")


def _load_jsonl(file: Path) -> tuple[list[Article], list[LoadProblem]]:
    source = str(file)
    articles: list[Article] = []
    problems: list[LoadProblem] = []
    seen: dict[str, int] = {}
    try:
        raw = file.read_bytes()
    except OSError as exc:
        return [], [LoadProblem(source, None, f"cannot read: {exc.strerror or exc}")]
    for number, line_bytes in enumerate(raw.splitlines(), start=1):
        try:
            line = line_bytes.decode("utf-8")
        except UnicodeDecodeError:
            problems.append(LoadProblem(source, number, "not UTF-8 text"))
            continue
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(LoadProblem(source, number, f"not valid JSON: {exc.msg} (column {exc.colno})"))
            continue
        if not isinstance(data, dict):
            problems.append(LoadProblem(source, number, "expected a JSON object"))
            continue
        try:
            article = Article.from_dict(data)
            if "body" in data:
                article.body = article.body.strip()
        except (ValueError, TypeError) as exc:
            problems.append(LoadProblem(source, number, str(exc)))
            continue
        if article.id in seen:
            problems.append(
                LoadProblem(source, number, f"duplicate id {article.id!r} (first on line {seen[article.id]}); skipped")
            )
            continue
        seen[article.id] = number
        articles.append(article)
    return articles, problems


def dump_articles(articles: Iterable[Article], path: str | Path) -> list[Path]:
    """Write articles to `path`: JSON Lines when it ends in `.jsonl`, otherwise a folder of Markdown files.

    In a folder each article is `<id>.md` (ids unsafe as file names use the slug); existing files of
    the same name are replaced and other files are left alone. Returns the files written.
    """
    target = Path(path)
    items = list(articles)
    if target.suffix.lower() == ".jsonl":
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("w", encoding="utf-8", newline="\n") as out:
            for article in items:
                out.write(json.dumps(article.to_dict(), ensure_ascii=False) + "\n")
        return [target]
    import frontmatter

    target.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    used: set[str] = set()
    for article in items:
        name = _file_name(article, used)
        used.add(name.lower())
        meta = article.to_dict()
        body = meta.pop("body")
        post = frontmatter.Post(body, **meta)
        text = frontmatter.dumps(post, sort_keys=False, allow_unicode=True)
        file = target / name
        file.write_text(text + "\n", encoding="utf-8", newline="\n")
        written.append(file)
    return written


def _file_name(article: Article, used: set[str]) -> str:
    stem = article.id if _SAFE_FILE_NAME_RE.match(article.id) else article.slug
    if not _SAFE_FILE_NAME_RE.match(stem):
        stem = "article"
    name = f"{stem}.md"
    counter = 2
    while name.lower() in used:
        name = f"{stem}-{counter}.md"
        counter += 1
    return name


def diff_articles(old: Iterable[Article], new: Iterable[Article]) -> ArticleDiff:
    """Compare two sets of articles by id: which are new, changed in any field, the same, or gone."""
    before = {a.id: a for a in old}
    after = {a.id: a for a in new}
    added = sorted(i for i in after if i not in before)
    removed = sorted(i for i in before if i not in after)
    updated = sorted(i for i in after if i in before and after[i] != before[i])
    unchanged = sorted(i for i in after if i in before and after[i] == before[i])
    return ArticleDiff(added=added, updated=updated, unchanged=unchanged, removed=removed)


def published(articles: Sequence[Article]) -> list[Article]:
    return [a for a in articles if a.published]
