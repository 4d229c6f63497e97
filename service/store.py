"""The store: images by md5, box/OCR/translation runs shared by every reader, and each reader profile's
own selection, manual translations and glossary; usage counts.

SQLAlchemy 2 over SQLite (default, WAL mode) or PostgreSQL. Runs are keyed by their input,
model, language(s) and the options that change the output (`core.options.cache_key`), so every
stage reuses a stored result unless the client forces a new one. Inserts race-safely with
ON CONFLICT, which both dialects support.

Writes that depend on what was read before them hold what they read: a block or text a writer is
about to reference is locked (PostgreSQL) or read under SQLite's one write lock, so a forced re-run or
a prune between the read and the write cannot leave the write pointing to a row that is gone, or to
another row that took its id (block ids are never reused, on SQLite either). Every time the store
writes or compares comes from the database's clock, never a replica's.
"""

import fcntl
import hashlib
import os
import sqlite3
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Literal

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    inspect,
    literal,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from core import glossary as glossary_rules
from core.boxes import Block, Box
from core.errors import PayloadTooLarge, StoreUnavailable
from core.glossary import Glossary
from core.slots import KINDS, NO_CHOICE, ModelKind, ModelSlots

MANUAL = "manual"
"""The model name a manual translation is listed under."""
DEFAULT_PROFILE = 1
"""The profile of the bare paths, with today's rules: made by migration 0006, never revoked."""
_MODEL_KEYS = ModelSlots(box="box_model", ocr="ocr_model", tsl="tsl_model")
"""The selection's models as the selections and usage tables name them."""


def _now() -> datetime:
    """This process's clock: only for rows made outside the store's methods (ORM defaults); the
    store's own times are the database's (`Store._database_now`)."""
    return datetime.now(UTC)


def _aware(moment: datetime) -> datetime:
    """SQLite returns stored times without their zone; they are UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class ImageRow(Base):
    __tablename__ = "images"
    id: Mapped[int] = mapped_column(primary_key=True)
    md5: Mapped[str] = mapped_column(String(32), unique=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    last_used: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=_now, index=True)
    """Last time a request asked for this image (updated in batches): retention prunes the oldest."""


class TextRow(Base):
    """Every OCR'd, translated or user-written text, once (keyed by its sha256)."""

    __tablename__ = "texts"
    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    text: Mapped[str] = mapped_column(Text)


class BoxRunRow(Base):
    __tablename__ = "box_runs"
    __table_args__ = (UniqueConstraint("image_id", "model", "lang", "options"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(String(200))
    lang: Mapped[str] = mapped_column(String(8))
    options: Mapped[str] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class BlockRow(Base):
    __tablename__ = "blocks"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("box_runs.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    vertical: Mapped[bool] = mapped_column(default=False)
    l: Mapped[int] = mapped_column(Integer)
    b: Mapped[int] = mapped_column(Integer)
    r: Mapped[int] = mapped_column(Integer)
    t: Mapped[int] = mapped_column(Integer)


class SingleBoxRow(Base):
    __tablename__ = "single_boxes"
    id: Mapped[int] = mapped_column(primary_key=True)
    block_id: Mapped[int] = mapped_column(ForeignKey("blocks.id", ondelete="CASCADE"), index=True)
    line: Mapped[int] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer)
    l: Mapped[int] = mapped_column(Integer)
    b: Mapped[int] = mapped_column(Integer)
    r: Mapped[int] = mapped_column(Integer)
    t: Mapped[int] = mapped_column(Integer)


class OCRRunRow(Base):
    __tablename__ = "ocr_runs"
    __table_args__ = (UniqueConstraint("block_id", "model", "lang", "options"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    block_id: Mapped[int] = mapped_column(ForeignKey("blocks.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(String(200))
    lang: Mapped[str] = mapped_column(String(8))
    options: Mapped[str] = mapped_column(Text)
    text_id: Mapped[int] = mapped_column(ForeignKey("texts.id"))


class TranslationRunRow(Base):
    """Machine translations, shared by every profile."""

    __tablename__ = "translation_runs"
    __table_args__ = (UniqueConstraint("text_id", "model", "lang_src", "lang_dst", "options"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    text_id: Mapped[int] = mapped_column(ForeignKey("texts.id"), index=True)
    model: Mapped[str] = mapped_column(String(200))
    lang_src: Mapped[str] = mapped_column(String(8))
    lang_dst: Mapped[str] = mapped_column(String(8))
    options: Mapped[str] = mapped_column(Text)
    result_id: Mapped[int] = mapped_column(ForeignKey("texts.id"))
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class SettingRow(Base):
    """The server's own small persisted state: the disabled plugin families."""

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class UsageRow(Base):
    """How often a language or model was selected, to list the most used first."""

    __tablename__ = "usage"
    kind: Mapped[str] = mapped_column(String(20), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


class ProfileRow(Base):
    """A reader's profile, reached under `/r/<key>/`: only the key's digest is kept
    (`core/profile_keys.py`). The default profile, the bare paths', has no key."""

    __tablename__ = "profiles"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    key_sha256: Mapped[str | None] = mapped_column(String(64), unique=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    last_used: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SelectionRow(Base):
    """A profile's languages and models ("" where none is selected)."""

    __tablename__ = "selections"
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"), primary_key=True)
    lang_src: Mapped[str] = mapped_column(String(8), default="")
    lang_dst: Mapped[str] = mapped_column(String(8), default="")
    box_model: Mapped[str] = mapped_column(String(200), default="")
    ocr_model: Mapped[str] = mapped_column(String(200), default="")
    tsl_model: Mapped[str] = mapped_column(String(200), default="")


class ModelChoiceRow(Base):
    """A model a profile chose itself (`set_models`) for a source language (box, OCR) or a language pair
    (translation, `lang_dst` "" for the others): `set_lang` selects it again when the reader comes back."""

    __tablename__ = "model_choices"
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(3), primary_key=True)
    lang_src: Mapped[str] = mapped_column(String(8), primary_key=True)
    lang_dst: Mapped[str] = mapped_column(String(8), primary_key=True)
    model: Mapped[str] = mapped_column(String(200))


class ManualTranslationRow(Base):
    """A profile's own translation of a text in a language pair: it wins over machine ones when the
    translation options favour manual ones, and other profiles never see it."""

    __tablename__ = "manual_translations"
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"), primary_key=True)
    text_id: Mapped[int] = mapped_column(ForeignKey("texts.id"), primary_key=True)
    lang_src: Mapped[str] = mapped_column(String(8), primary_key=True)
    lang_dst: Mapped[str] = mapped_column(String(8), primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("texts.id"))
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class GlossaryRow(Base):
    """A profile's glossary: a term of a language pair and the translation every model must give it."""

    __tablename__ = "glossary_terms"
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"), primary_key=True)
    lang_src: Mapped[str] = mapped_column(String(8), primary_key=True)
    lang_dst: Mapped[str] = mapped_column(String(8), primary_key=True)
    term: Mapped[str] = mapped_column(String(100), primary_key=True)
    translation: Mapped[str] = mapped_column(String(200))


class WorkClaimRow(Base):
    """An identical work call being computed by one ingress replica (`owner`); the others wait for
    it until `expires`, which the owner's heartbeat moves on while it works."""

    __tablename__ = "work_claims"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    expires: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# The read path's statements, built once with bound parameters: the md5-only lazy call runs
# all of them and is latency-bound, and building SQLAlchemy expressions per call costs more
# than SQLite takes to answer them.
_SETTINGS = select(SettingRow.key, SettingRow.value).where(SettingRow.key.in_(bindparam("keys", expanding=True)))
_BOX_RUN = select(BoxRunRow.id).join(ImageRow, ImageRow.id == BoxRunRow.image_id).where(
    ImageRow.md5 == bindparam("md5"), BoxRunRow.model == bindparam("model"), BoxRunRow.lang == bindparam("lang"),
    BoxRunRow.options == bindparam("options"))
_block, _single = BlockRow.__table__.c, SingleBoxRow.__table__.c
_BLOCKS_WITH_SINGLES = (
    select(_block.id, _block.vertical, _block.l, _block.b, _block.r, _block.t,
           _single.line, _single.l, _single.b, _single.r, _single.t)
    .select_from(BlockRow.__table__.outerjoin(SingleBoxRow.__table__, _single.block_id == _block.id))
    .where(_block.run_id == bindparam("run_id"))
    .order_by(_block.position, _single.line, _single.position))
_OCR_TEXTS = select(OCRRunRow.block_id, TextRow.text).join(TextRow, TextRow.id == OCRRunRow.text_id).where(
    OCRRunRow.block_id.in_(bindparam("block_ids", expanding=True)), OCRRunRow.model == bindparam("model"),
    OCRRunRow.lang == bindparam("lang"), OCRRunRow.options == bindparam("options"))
_source, _result, _run = TextRow.__table__.alias("source"), TextRow.__table__.alias("result"), TranslationRunRow
_TRANSLATIONS = (
    select(_source.c.sha256, _run.model, _result.c.text)
    .select_from(_run)
    .join(_source, _source.c.id == _run.text_id)
    .join(_result, _result.c.id == _run.result_id)
    .where(_source.c.sha256.in_(bindparam("shas", expanding=True)), _run.lang_src == bindparam("src"),
           _run.lang_dst == bindparam("dst"), _run.model == bindparam("model"), _run.options == bindparam("options")))
_manual = ManualTranslationRow
_MANUAL_TRANSLATIONS = (
    select(_source.c.sha256, _result.c.text)
    .select_from(_manual)
    .join(_source, _source.c.id == _manual.text_id)
    .join(_result, _result.c.id == _manual.result_id)
    .where(_source.c.sha256.in_(bindparam("shas", expanding=True)), _manual.profile_id == bindparam("profile"),
           _manual.lang_src == bindparam("src"), _manual.lang_dst == bindparam("dst")))


@dataclass(frozen=True)
class Selection:
    """The reader's languages and models; "" where none is selected."""

    lang_src: str = ""
    lang_dst: str = ""
    models: ModelSlots[str] = ModelSlots("", "", "")


@dataclass(frozen=True)
class Profile:
    id: int
    name: str
    key_sha256: str | None
    created: datetime
    last_used: datetime | None


_PROFILE_COLUMNS = (ProfileRow.id, ProfileRow.name, ProfileRow.key_sha256, ProfileRow.created, ProfileRow.last_used)


def _profile(row) -> Profile:
    profile_id, name, key_sha256, created, last_used = row
    return Profile(profile_id, name, key_sha256, _aware(created), last_used and _aware(last_used))


@dataclass(frozen=True)
class StoredBlock:
    id: int
    block: Block


def _choice_dst(kind: ModelKind, lang_dst: str) -> str:
    """A translation model is chosen for a language pair; a box or OCR model for the source language alone."""
    return lang_dst if kind == "tsl" else ""


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


MIGRATIONS = Path(__file__).resolve().parent / "migrations"
ADOPTED_REVISION = "0001"
"""The schema that databases made before versioned migrations have."""
_GLOSSARIES = select(GlossaryRow.lang_src, GlossaryRow.term, GlossaryRow.translation).where(
    GlossaryRow.profile_id == bindparam("profile"), GlossaryRow.lang_src.in_(bindparam("sources", expanding=True)),
    GlossaryRow.lang_dst == bindparam("dst"))
_NEWEST_FIRST = (TranslationRunRow.created.desc(), TranslationRunRow.id.desc())
"""Stored translations of a text, the newest first."""
_MIGRATION_LOCK = 7_356_114
"""PostgreSQL advisory lock key: replicas starting together migrate one at a time."""
_GLOSSARY_LOCK = 7_356_115
"""PostgreSQL advisory lock class (with the pair's hash): one writer at a time adds terms to a pair."""
_ISSUED_BLOCK_IDS = "issued_ids.blocks"
"""SQLite: the setting that holds the highest block id ever handed out."""


class StoreInUse(RuntimeError):
    """A SQLite store that a restore needs alone is open (a server), or one being restored was opened."""


def _in_use_marker(database: str, exclusive: bool):
    """The lock that every store holds, shared, on a file beside its SQLite database for as long as it is
    open (the kernel drops it when the process ends, however it ends); a restore holds it alone."""
    handle = open(f"{database}.in-use", "a")  # noqa: SIM115 - held for the store's life, closed by close()
    try:
        fcntl.flock(handle, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        if exclusive:
            raise StoreInUse(f"{database} is open in a running server (or another command): stop the server "
                             f"first.") from None
        raise StoreInUse(f"{database} is being restored (python -m service.store restore): start the server "
                         f"once the restore has finished.") from None
    return handle




@cache
def _migration_scripts() -> tuple[Config, str]:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config, ScriptDirectory.from_config(config).get_current_head()


@contextmanager
def _migrating(engine: Engine) -> Iterator[Connection]:
    """A transaction that one migrating process at a time holds: PostgreSQL's advisory lock, which
    the commit releases; on SQLite a lock file beside the database file, released only after the
    commit (SQLite runs DDL outside the transaction: a second migrator that looked before the first
    one's commit would see its tables without their version row, and create them again)."""
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database not in (None, "", ":memory:"):
        with open(f"{database}.migrate-lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            with engine.begin() as connection:
                yield connection
        return
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
        yield connection


def upgrade_schema(engine: Engine) -> None:
    """Bring the database to the newest schema with the Alembic migrations in `migrations/`,
    keeping every row; a database made before migrations existed is adopted as revision 0001."""
    config, head = _migration_scripts()
    with engine.connect() as connection:
        if MigrationContext.configure(connection).get_current_revision() == head:
            return
    with _migrating(engine) as connection:
        config.attributes["connection"] = connection
        tables = set(inspect(connection).get_table_names())
        if ImageRow.__tablename__ in tables and "alembic_version" not in tables:
            command.stamp(config, ADOPTED_REVISION)
        command.upgrade(config, "head")


@dataclass(frozen=True)
class RunKey:
    """What a stored detection or OCR run is found by: the model, the language it read, and the
    digest of the options that change its output (`core.options.cache_key`)."""

    model: str
    lang: str
    options: str

    def columns(self) -> dict[str, str]:
        """The run table columns it matches."""
        return {"model": self.model, "lang": self.lang, "options": self.options}


@dataclass(frozen=True)
class TranslationKey:
    """What a stored translation is found by: the model, the language pair and the options digest."""

    model: str
    src: str
    dst: str
    options: str


class Store:
    def __init__(self, database_url: str):
        self.engine: Engine = create_engine(database_url, pool_pre_ping=True)
        self._in_use = None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", self._sqlite_pragmas)
            Path(self.engine.url.database).parent.mkdir(parents=True, exist_ok=True)
            if self.engine.url.database not in ("", ":memory:"):
                self._in_use = _in_use_marker(self.engine.url.database, exclusive=False)
        self._insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        self._clock = (func.now() if self.engine.dialect.name == "postgresql"
                       else func.strftime("%Y-%m-%d %H:%M:%f000", "now"))
        """The database's clock in SQL, the one clock of every time the store writes or compares: the
        PostgreSQL server's, which every replica shares, or the machine's as SQLite reads it (every
        process using a SQLite file is on its machine); in SQLAlchemy's own format of SQLite times."""
        upgrade_schema(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._open = threading.local()

    @staticmethod
    def _sqlite_pragmas(connection, _record) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA busy_timeout=10000")  # first: the others wait rather than fail on a lock
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @contextmanager
    def _session(self) -> Iterator[Session]:
        """A session in a transaction; inside `transaction()` on this thread, that one."""
        current = getattr(self._open, "session", None)
        if current is not None:
            yield current
            return
        try:
            with self._sessions() as session, session.begin():
                self._open.session = session
                try:
                    yield session
                finally:
                    self._open.session = None
        except (OperationalError, InterfaceError) as exc:  # unreachable, restarting, locked: come back later
            raise StoreUnavailable() from exc

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Make the store calls inside one transaction on one connection: a consistent view, and
        one connection checkout instead of one per call (the md5-only lazy path is latency-bound)."""
        with self._session():
            yield

    def close(self) -> None:
        self.engine.dispose()
        if self._in_use is not None:
            self._in_use.close()
            self._in_use = None

    def _database_now(self, session: Session) -> datetime:
        """The time on the database's clock (`_clock`)."""
        return _aware(session.scalar(select(type_coerce(self._clock, DateTime(timezone=True)))))

    # -- helpers -----------------------------------------------------------------------------
    def _text_ids(self, session: Session, texts: Iterable[str]) -> dict[str, int]:
        unique = {text: _sha(text) for text in texts}
        if not unique:
            return {}
        # In one order for every writer: concurrent inserts of the same texts then never deadlock.
        rows = sorted(({"sha256": sha, "text": text} for text, sha in unique.items()), key=lambda row: row["sha256"])
        ids: dict[str, int] = {}
        for _ in range(3):
            missing = [row for row in rows if row["sha256"] not in ids]
            session.execute(self._insert(TextRow).values(missing).on_conflict_do_nothing(index_elements=["sha256"]))
            # Locked until the commit (PostgreSQL; SQLite's writer holds its one write lock by now): a prune
            # cannot forget a text this transaction is about to point to. One a prune forgot between the
            # insert (which found it) and this read is inserted again on the next round.
            ids.update(session.execute(
                select(TextRow.sha256, TextRow.id).where(TextRow.sha256.in_([row["sha256"] for row in missing]))
                .order_by(TextRow.sha256).with_for_update(read=True, key_share=True)).all())
            if len(ids) == len(rows):
                return {text: ids[sha] for text, sha in unique.items()}
        raise RuntimeError("texts stored here were forgotten three times over while being stored")

    def _find_text_id(self, session: Session, text: str) -> int | None:
        return session.scalar(select(TextRow.id).where(TextRow.sha256 == _sha(text)))

    # -- selection, usage, plugin state --------------------------------------------------------
    def selection(self, profile: int = DEFAULT_PROFILE) -> Selection:
        with self._session() as session:
            row = session.get(SelectionRow, profile)
        if row is None:
            return Selection()
        return Selection(row.lang_src, row.lang_dst, _MODEL_KEYS.map(lambda column: getattr(row, column)))

    def _put_settings(self, session: Session, values: dict[str, str]) -> None:
        for key, value in values.items():
            statement = self._insert(SettingRow).values(key=key, value=value)
            session.execute(statement.on_conflict_do_update(index_elements=["key"], set_={"value": value}))

    def update_selection(self, lang_src: str | None = None, lang_dst: str | None = None,
                         models: ModelSlots[str | None] = NO_CHOICE, profile: int = DEFAULT_PROFILE,
                         counted: bool = True) -> Selection:
        """Set what is not None ("" deselects), counting each name set as a use (`counted`: a reader's
        choice; the server's own, `set_lang`'s defaults, is no use of a model and does not reorder the lists)."""
        given = {"lang_src": lang_src, "lang_dst": lang_dst}
        given.update((_MODEL_KEYS.get(kind), model_id) for kind, model_id in models)
        slots = {key: value for key, value in given.items() if value is not None}
        with self._session() as session:
            if slots:
                statement = self._insert(SelectionRow).values(profile_id=profile, **slots)
                session.execute(statement.on_conflict_do_update(index_elements=["profile_id"], set_=slots))
            for key, name in slots.items():
                if name and counted:
                    statement = self._insert(UsageRow).values(kind=key, name=name, count=1)
                    session.execute(statement.on_conflict_do_update(
                        index_elements=["kind", "name"], set_={"count": UsageRow.count + 1}))
        return self.selection(profile)

    def choose_models(self, models: ModelSlots[str | None], profile: int = DEFAULT_PROFILE) -> Selection:
        """The reader's own choice: selected, and remembered for the selection's languages, where
        `set_lang` finds it again (`own_choices`)."""
        with self._session() as session:
            selection = self.update_selection(models=models, profile=profile)
            for kind, model_id in models:
                if model_id and selection.lang_src:
                    self._put_choice(session, profile, kind, selection.lang_src,
                                     _choice_dst(kind, selection.lang_dst), model_id)
        return selection

    def set_model_choice(self, kind: ModelKind, lang_src: str, lang_dst: str, model_id: str,
                         profile: int = DEFAULT_PROFILE) -> None:
        """Remember `model_id` as the profile's own choice for the languages (`lang_dst` "" for a box or OCR
        model), as `choose_models` does, without selecting it (an import). Stored as given: `set_lang`
        selects it only where the profile may use it then."""
        with self._session() as session:
            self._put_choice(session, profile, kind, lang_src, lang_dst, model_id)

    def _put_choice(self, session: Session, profile: int, kind: ModelKind, lang_src: str, lang_dst: str,
                    model_id: str) -> None:
        statement = self._insert(ModelChoiceRow).values(profile_id=profile, kind=kind, lang_src=lang_src,
                                                         lang_dst=lang_dst, model=model_id)
        session.execute(statement.on_conflict_do_update(
            index_elements=["profile_id", "kind", "lang_src", "lang_dst"], set_={"model": model_id}))

    def own_choices(self, lang_src: str, lang_dst: str, profile: int = DEFAULT_PROFILE) -> ModelSlots[str]:
        """The models the profile chose itself for these languages ("" where it chose none)."""
        with self._session() as session:
            rows = session.execute(select(ModelChoiceRow.kind, ModelChoiceRow.lang_dst, ModelChoiceRow.model).where(
                ModelChoiceRow.profile_id == profile, ModelChoiceRow.lang_src == lang_src)).all()
        models = {kind: model for kind, dst, model in rows if dst == _choice_dst(kind, lang_dst)}
        return ModelSlots.by_kind(lambda kind: models.get(kind, ""))

    def usage(self, slot: Literal["lang_src", "lang_dst"] | ModelKind) -> dict[str, int]:
        """How often each language or model was selected for the slot."""
        key = _MODEL_KEYS.get(slot) if slot in KINDS else slot
        with self._session() as session:
            return dict(session.execute(select(UsageRow.name, UsageRow.count).where(UsageRow.kind == key)).all())

    def disabled_families(self) -> frozenset[str]:
        with self._session() as session:
            value = dict(session.execute(_SETTINGS, {"keys": ["disabled_families"]}).all()).get("disabled_families")
        return frozenset(filter(None, (value or "").split(",")))

    def set_disabled_families(self, names: Iterable[str]) -> None:
        with self._session() as session:
            self._put_settings(session, {"disabled_families": ",".join(sorted(set(names)))})

    # -- reader profiles ---------------------------------------------------------------------------
    def create_profile(self, name: str, key_sha256: str) -> Profile:
        """A new profile with an empty selection, manual translations and glossary; a ValueError when the
        name is taken."""
        with self._session() as session:
            created = session.scalar(
                self._insert(ProfileRow).values(name=name, key_sha256=key_sha256, created=self._clock)
                .on_conflict_do_nothing(index_elements=["name"]).returning(ProfileRow.id))
        if created is None:
            raise ValueError(f"a profile named {name!r} exists already")
        return self._profile_where(ProfileRow.id == created)

    def profile_with_key(self, key_sha256: str) -> Profile | None:
        """The profile whose key has this digest (the index finds it; the caller compares in constant time)."""
        return self._profile_where(ProfileRow.key_sha256 == key_sha256)

    def profiles(self) -> list[Profile]:
        """Every profile, the default one first."""
        with self._session() as session:
            rows = session.execute(select(*_PROFILE_COLUMNS).order_by(ProfileRow.id)).all()
        return [_profile(row) for row in rows]

    def profile_named(self, name: str) -> Profile | None:
        """The operator's way to a profile (its export, a bulk run for its reader): by the name they gave it."""
        return self._profile_where(ProfileRow.name == name)

    def manual_translations(self, profile: int) -> list[dict[str, str]]:
        """Every manual translation the profile keeps, each with its pair, text and translation (an export)."""
        with self._session() as session:
            rows = session.execute(
                select(_manual.lang_src, _manual.lang_dst, _source.c.text.label("text"),
                       _result.c.text.label("translation"))
                .select_from(_manual)
                .join(_source, _source.c.id == _manual.text_id)
                .join(_result, _result.c.id == _manual.result_id)
                .where(_manual.profile_id == profile)
                .order_by(_manual.lang_src, _manual.lang_dst, _source.c.text)).mappings().all()
        return [dict(row) for row in rows]

    def glossary_terms(self, profile: int) -> list[dict[str, str]]:
        """Every glossary term the profile keeps, each with its pair and translation (an export)."""
        return self._profile_rows(GlossaryRow, profile, ("lang_src", "lang_dst", "term", "translation"),
                                  ("lang_src", "lang_dst", "term"))

    def model_choices(self, profile: int) -> list[dict[str, str]]:
        """Every model the profile chose itself, each with its kind, languages and model id (an export)."""
        return self._profile_rows(ModelChoiceRow, profile, ("kind", "lang_src", "lang_dst", "model"),
                                  ("lang_src", "lang_dst", "kind"))

    def _profile_rows(self, table: type[Base], profile: int, columns: tuple[str, ...],
                      order: tuple[str, ...]) -> list[dict[str, str]]:
        """The profile's rows of `table` as dicts of `columns`, sorted by `order`: the same file every export."""
        with self._session() as session:
            rows = session.execute(
                select(*(getattr(table, column) for column in columns))
                .where(table.profile_id == profile)
                .order_by(*(getattr(table, column) for column in order))).mappings().all()
        return [dict(row) for row in rows]

    def _profile_where(self, condition) -> Profile | None:
        with self._session() as session:
            row = session.execute(select(*_PROFILE_COLUMNS).where(condition)).one_or_none()
        return None if row is None else _profile(row)

    def revoke_profile(self, name: str) -> bool:
        """Delete the profile and everything it kept (its selection, manual translations and glossary go
        with it); the default profile cannot be revoked. False when no such profile exists."""
        with self._session() as session:
            return session.execute(delete(ProfileRow).where(
                ProfileRow.name == name, ProfileRow.id != DEFAULT_PROFILE)).rowcount > 0

    def touch_profiles(self, ids: Iterable[int]) -> None:
        """Mark profiles as just used (batched off the request path, as images are)."""
        ids = sorted(set(ids))
        if ids:
            with self._session() as session:
                session.execute(update(ProfileRow).where(ProfileRow.id.in_(ids)).values(last_used=self._clock))

    def expire_profiles(self, unused_for: timedelta) -> list[str]:
        """Revoke the profiles unused for `unused_for` (never used: since they were made); their names."""
        with self._session() as session:
            now = self._database_now(session)
            used = func.coalesce(ProfileRow.last_used, ProfileRow.created)
            return list(session.scalars(delete(ProfileRow).where(
                ProfileRow.id != DEFAULT_PROFILE, used < now - unused_for).returning(ProfileRow.name)))

    def count_manual_translations(self, profile: int) -> int:
        """The manual translations the profile keeps, every language pair together (its operator's cap)."""
        return self._count_of_profile(ManualTranslationRow, profile)

    def count_glossary_terms(self, profile: int) -> int:
        """The glossary terms the profile keeps, every language pair together (its operator's cap)."""
        return self._count_of_profile(GlossaryRow, profile)

    def _count_of_profile(self, row: type[ManualTranslationRow | GlossaryRow], profile: int) -> int:
        with self._session() as session:
            return session.scalar(select(func.count()).select_from(row).where(row.profile_id == profile))

    # -- box detection ---------------------------------------------------------------------------
    def find_blocks(self, md5: str, key: RunKey) -> list[StoredBlock] | None:
        with self._session() as session:
            run_id = session.scalar(_BOX_RUN, {"md5": md5, **key.columns()})
            if run_id is None:
                return None
            rows = session.execute(_BLOCKS_WITH_SINGLES, {"run_id": run_id}).all()
        stored: dict[int, StoredBlock] = {}
        for block_id, vertical, l, b, r, t, line, *single_box in rows:
            if block_id not in stored:
                stored[block_id] = StoredBlock(block_id, Block(Box(l, b, r, t), [], vertical))
            lines = stored[block_id].block.lines
            if line is not None:
                while len(lines) <= line:
                    lines.append([])
                lines[line].append(Box(*single_box))
        return list(stored.values())

    def save_blocks(self, md5: str, key: RunKey, blocks: list[Block], replace: bool = False) -> list[StoredBlock]:
        """Store a detection run. When the same run is already stored (another request, maybe on
        another replica, was first), that one stands and is returned, unless `replace` (a forced
        re-run) deletes it with its OCR first."""
        with self._session() as session:
            # Marked as used, and so locked until the commit (PostgreSQL; SQLite: its one write lock), in
            # the statement that finds or adds it: a prune keeps it, or had forgotten it and it is added again.
            image_id = session.scalar(
                self._insert(ImageRow).values(md5=md5, created=self._clock, last_used=self._clock)
                .on_conflict_do_update(index_elements=["md5"], set_={"last_used": self._clock})
                .returning(ImageRow.id))
            if replace:
                old = select(BoxRunRow.id).where(BoxRunRow.image_id == image_id, BoxRunRow.model == key.model,
                                                 BoxRunRow.lang == key.lang, BoxRunRow.options == key.options)
                old_blocks = select(BlockRow.id).where(BlockRow.run_id.in_(old))
                # The blocks first, in the order save_ocr locks them: a request storing OCR texts on them
                # finishes first, or waits and finds them gone (its rows are not deleted under it).
                session.execute(old_blocks.order_by(BlockRow.id).with_for_update())
                session.execute(delete(OCRRunRow).where(OCRRunRow.block_id.in_(old_blocks)))
                session.execute(delete(SingleBoxRow).where(SingleBoxRow.block_id.in_(old_blocks)))
                session.execute(delete(BlockRow).where(BlockRow.run_id.in_(old)))
                session.execute(delete(BoxRunRow).where(BoxRunRow.id.in_(old)))
            run_id = session.scalar(
                self._insert(BoxRunRow)
                .values(image_id=image_id, **key.columns(), created=self._clock)
                .on_conflict_do_nothing(index_elements=["image_id", "model", "lang", "options"])
                .returning(BoxRunRow.id))
            if run_id is None:
                return self.find_blocks(md5, key)
            stored = []
            for position, (block_id, block) in enumerate(zip(self._new_block_ids(session, len(blocks)), blocks,
                                                             strict=True)):
                row = BlockRow(id=block_id, run_id=run_id, position=position, vertical=block.vertical,
                               **block.box._asdict())
                session.add(row)
                session.flush()
                session.add_all(
                    SingleBoxRow(block_id=row.id, line=n, position=i, **box._asdict())
                    for n, line in enumerate(block.lines) for i, box in enumerate(line))
                stored.append(StoredBlock(row.id, block))
        return stored

    def _new_block_ids(self, session: Session, count: int) -> list[int | None]:
        """Ids for `count` new blocks, none ever handed out before: a request holds the ids of the blocks
        it read until it stores their OCR texts, and a block that took one of them would get the texts
        of another. PostgreSQL's sequence never hands an id out twice (None: it picks). SQLite, whose
        tables have no AUTOINCREMENT, hands out again the ids of the newest rows once they are deleted
        (a forced re-run, a prune), so here new ids start above the highest one ever handed out, kept
        in the settings (this runs under SQLite's one write lock)."""
        if self.engine.dialect.name != "sqlite" or not count:
            return [None] * count
        issued = session.scalar(select(SettingRow.value).where(SettingRow.key == _ISSUED_BLOCK_IDS))
        top = max(int(issued or 0), session.scalar(select(func.max(BlockRow.id))) or 0)
        self._put_settings(session, {_ISSUED_BLOCK_IDS: str(top + count)})
        return list(range(top + 1, top + count + 1))

    def has_image(self, md5: str) -> bool:
        with self._session() as session:
            return session.scalar(select(func.count()).select_from(ImageRow).where(ImageRow.md5 == md5)) > 0

    # -- OCR -------------------------------------------------------------------------------------
    def find_ocr(self, block_ids: list[int], key: RunKey) -> dict[int, str]:
        with self._session() as session:
            rows = session.execute(_OCR_TEXTS, {"block_ids": block_ids, **key.columns()}).all()
        return dict(rows)

    def replace_run(self, md5: str, box: RunKey, ocr: RunKey, blocks: list[Block], texts: list[str]
                    ) -> list[StoredBlock]:
        """A forced re-run: the image's detection run `box` and its OCR `ocr` replaced by new ones in
        one transaction."""
        with self.transaction():
            stored = self.save_blocks(md5, box, blocks, replace=True)
            self.save_ocr({s.id: text for s, text in zip(stored, texts, strict=True)}, ocr)
        return stored

    def save_ocr(self, results: dict[int, str], key: RunKey) -> None:
        """Store OCR texts of blocks. Blocks a forced re-run or a prune deleted since they were read are
        skipped (their texts describe a run that is gone; the request that read them still gets its
        answer), and no other block ever has their ids (`_new_block_ids`)."""
        if not results:
            return
        with self._session() as session:
            # Locked until the commit (PostgreSQL): a forced re-run or a prune deleting them waits for
            # this write, or this read waits for it and finds them gone.
            alive = session.scalars(select(BlockRow.id).where(BlockRow.id.in_(list(results))).order_by(BlockRow.id)
                                    .with_for_update(read=True, key_share=True)).all()
            ids = self._text_ids(session, [results[block_id] for block_id in alive])
            for block_id in alive:
                # Inserted only while the block is there, in one statement (SQLite has no row locks: its
                # writer holds the one write lock since its first write, the texts').
                still_there = select(BlockRow.id, literal(key.model), literal(key.lang), literal(key.options),
                                     literal(ids[results[block_id]])).where(BlockRow.id == block_id)
                # The first writer's text stands: a forced re-run replaces blocks, so its OCR rows are new.
                session.execute(self._insert(OCRRunRow)
                                .from_select(["block_id", "model", "lang", "options", "text_id"], still_there)
                                .on_conflict_do_nothing(index_elements=["block_id", "model", "lang", "options"]))

    # -- translation -----------------------------------------------------------------------------
    def find_translations(self, texts: list[str], key: TranslationKey, favor_manual: bool,
                          profile: int = DEFAULT_PROFILE) -> dict[str, str]:
        """Stored translations of `texts`; the profile's manual one wins when `favor_manual`."""
        shas = {_sha(text): text for text in texts}
        with self._session() as session:
            rows = session.execute(
                _TRANSLATIONS,
                {"shas": list(shas), "src": key.src, "dst": key.dst, "model": key.model, "options": key.options}).all()
        found = {shas[sha]: text for sha, _model, text in rows}
        if favor_manual:
            found.update(self.find_manual_translations(texts, key.src, key.dst, profile))
        return found

    def find_manual_translations(self, texts: list[str], src: str, dst: str,
                                 profile: int = DEFAULT_PROFILE) -> dict[str, str]:
        """The profile's own translations of `texts` in the pair."""
        shas = {_sha(text): text for text in texts}
        with self._session() as session:
            rows = session.execute(_MANUAL_TRANSLATIONS,
                                   {"shas": list(shas), "src": src, "dst": dst, "profile": profile}).all()
        return {shas[sha]: text for sha, text in rows}

    def save_translations(self, results: dict[str, str], key: TranslationKey, replace: bool = False) -> None:
        """Store translations. When another writer (another request, maybe on another replica) stored
        one for the same text, model and options first, that one stands, unless `replace` (a forced
        re-run, a user's own translation) overwrites it."""
        with self._session() as session:
            ids = self._text_ids(session, [*results, *results.values()])
            unique = ["text_id", "model", "lang_src", "lang_dst", "options"]
            for text, translation in results.items():
                statement = self._insert(TranslationRunRow).values(
                    text_id=ids[text], model=key.model, lang_src=key.src, lang_dst=key.dst, options=key.options,
                    result_id=ids[translation], created=self._clock)
                session.execute(statement.on_conflict_do_update(
                    index_elements=unique, set_={"result_id": ids[translation]})
                    if replace else statement.on_conflict_do_nothing(index_elements=unique))

    def knows_text(self, text: str) -> bool:
        with self._session() as session:
            return self._find_text_id(session, text) is not None

    def translations_of(self, text: str, src: str, dst: str,
                        profile: int = DEFAULT_PROFILE) -> list[tuple[str, str]] | None:
        """(model, translation) pairs stored for `text`: the machine ones and the profile's manual one
        (model "manual"), newest first; None if the text is unknown."""
        with self._session() as session:
            text_id = self._find_text_id(session, text)
            if text_id is None:
                return None
            machine = select(TranslationRunRow.model, TranslationRunRow.result_id, TranslationRunRow.created,
                             TranslationRunRow.id).where(
                TranslationRunRow.text_id == text_id, TranslationRunRow.lang_src == src,
                TranslationRunRow.lang_dst == dst)
            manual = select(literal(MANUAL), _manual.result_id, _manual.created, literal(0)).where(
                _manual.profile_id == profile, _manual.text_id == text_id, _manual.lang_src == src,
                _manual.lang_dst == dst)
            both = machine.union_all(manual).subquery()
            rows = session.execute(
                select(both.c[0], TextRow.text).join(TextRow, TextRow.id == both.c[1])
                .order_by(both.c[2].desc(), both.c[3].desc())).all()
        return [(model, translation) for model, translation in rows]

    def translated_from(self, text: str, dst: str) -> str | None:
        """The source language of the newest stored translation of `text` into `dst` (a detected one)."""
        with self._session() as session:
            text_id = self._find_text_id(session, text)
            return None if text_id is None else session.scalar(
                select(TranslationRunRow.lang_src)
                .where(TranslationRunRow.text_id == text_id, TranslationRunRow.lang_dst == dst)
                .order_by(*_NEWEST_FIRST).limit(1))

    def set_manual_translation(self, text: str, src: str, dst: str, translation: str,
                               profile: int = DEFAULT_PROFILE) -> None:
        """The profile's own translation of `text` in the pair, replacing its earlier one."""
        with self._session() as session:
            ids = self._text_ids(session, [text, translation])
            statement = self._insert(ManualTranslationRow).values(
                profile_id=profile, text_id=ids[text], lang_src=src, lang_dst=dst, result_id=ids[translation],
                created=self._clock)
            session.execute(statement.on_conflict_do_update(
                index_elements=["profile_id", "text_id", "lang_src", "lang_dst"],
                set_={"result_id": ids[translation], "created": self._clock}))

    # -- the glossary --------------------------------------------------------------------------------
    def glossary(self, src: str, dst: str, profile: int = DEFAULT_PROFILE) -> Glossary:
        return self.glossaries([src], dst, profile)[src]

    def glossaries(self, sources: list[str], dst: str, profile: int = DEFAULT_PROFILE) -> dict[str, Glossary]:
        """The profile's glossaries of several pairs into `dst`, in one query (a detected source has one per
        language)."""
        terms: dict[str, dict[str, str]] = {src: {} for src in sources}
        with self._session() as session:
            for src, term, translation in session.execute(_GLOSSARIES,
                                                          {"sources": sources, "dst": dst, "profile": profile}):
                terms[src][term] = translation
        return {src: Glossary.of(found) for src, found in terms.items()}

    def set_glossary_term(self, src: str, dst: str, term: str, translation: str,
                          profile: int = DEFAULT_PROFILE) -> None:
        """Add the term to the profile's glossary, or give it a new translation. A pair holds at most
        `core.glossary.MAX_TERMS` terms, counted in the transaction that adds one, after the pair's
        other writers (PostgreSQL: an advisory lock per profile and pair; SQLite: its one write lock,
        which the insert takes): two readers adding a term each to a nearly full glossary at once
        cannot both pass a count made before."""
        with self._session() as session:
            if self.engine.dialect.name == "postgresql":
                session.execute(select(func.pg_advisory_xact_lock(
                    _GLOSSARY_LOCK, func.hashtext(f"{profile}:{src}>{dst}"))))
            statement = self._insert(GlossaryRow).values(profile_id=profile, lang_src=src, lang_dst=dst, term=term,
                                                         translation=translation)
            session.execute(statement.on_conflict_do_update(
                index_elements=["profile_id", "lang_src", "lang_dst", "term"], set_={"translation": translation}))
            terms = session.scalar(select(func.count()).select_from(GlossaryRow).where(
                GlossaryRow.profile_id == profile, GlossaryRow.lang_src == src, GlossaryRow.lang_dst == dst))
            if terms > glossary_rules.MAX_TERMS:  # a new term (a new translation of one leaves the count): undone
                raise PayloadTooLarge(f"The {src}->{dst} glossary has the most terms it may "
                                      f"({glossary_rules.MAX_TERMS}): delete some first.")

    def delete_glossary_term(self, src: str, dst: str, term: str, profile: int = DEFAULT_PROFILE) -> bool:
        """Forget the term; False when the profile's glossary of the pair does not have it."""
        with self._session() as session:
            deleted = session.execute(delete(GlossaryRow).where(
                GlossaryRow.profile_id == profile, GlossaryRow.lang_src == src, GlossaryRow.lang_dst == dst,
                GlossaryRow.term == term))
        return deleted.rowcount > 0

    # -- work claims -------------------------------------------------------------------------------
    def claim(self, key: str, owner: str, lease_s: float) -> bool:
        """Take the claim on `key` for `lease_s` unless another owner holds it; an expired claim (its
        owner died) is taken over."""
        with self._session() as session:
            now = self._database_now(session)
            session.execute(delete(WorkClaimRow).where(WorkClaimRow.key == key, WorkClaimRow.expires < now))
            taken = session.scalar(
                self._insert(WorkClaimRow).values(key=key, owner=owner, expires=now + timedelta(seconds=lease_s))
                .on_conflict_do_nothing(index_elements=["key"]).returning(WorkClaimRow.key))
        return taken is not None

    def renew(self, key: str, owner: str, lease_s: float) -> None:
        with self._session() as session:
            expires = self._database_now(session) + timedelta(seconds=lease_s)
            session.execute(update(WorkClaimRow).where(WorkClaimRow.key == key, WorkClaimRow.owner == owner)
                            .values(expires=expires))

    def is_claimed(self, key: str) -> bool:
        with self._session() as session:
            expires = session.scalar(select(WorkClaimRow.expires).where(WorkClaimRow.key == key))
            return expires is not None and _aware(expires) > self._database_now(session)

    def release(self, key: str, owner: str) -> None:
        """Drop the claim if `owner` still holds it (a claim taken over after expiry is not its to drop)."""
        with self._session() as session:
            session.execute(delete(WorkClaimRow).where(WorkClaimRow.key == key, WorkClaimRow.owner == owner))

    # -- retention ---------------------------------------------------------------------------------
    def touch_images(self, md5s: Iterable[str]) -> None:
        """Mark images as just used (the service batches these, off the request path)."""
        md5s = sorted(set(md5s))
        if md5s:
            with self._session() as session:
                session.execute(update(ImageRow).where(ImageRow.md5.in_(md5s)).values(last_used=self._clock))

    def prune(self, max_age: timedelta | None = None, max_images: int | None = None) -> dict[str, int]:
        """Forget images unused for `max_age` or beyond the `max_images` most recently used (their
        boxes and OCR go with them), machine translations older than `max_age`, and texts nothing
        uses any more. The profiles' manual translations, selections and glossaries, and usage counts, are
        kept."""
        removed = {"images": 0, "translations": 0, "texts": 0}
        with self._session() as session:
            now = self._database_now(session)
            used = func.coalesce(ImageRow.last_used, ImageRow.created)
            # Each choice and its deletion in one statement (SQLite: under its one write lock). PostgreSQL:
            # rows that writers hold are skipped (an image a request is storing a run of, a text a request is
            # about to point to), and the rows chosen are locked until the deletion commits.
            doomed = select(ImageRow.id).with_for_update(skip_locked=True)
            if max_age is not None:  # the foreign keys cascade to runs, blocks, boxes and OCR
                removed["images"] += session.execute(delete(ImageRow).where(
                    ImageRow.id.in_(doomed.where(used < now - max_age)))).rowcount
            if max_images is not None:
                removed["images"] += session.execute(delete(ImageRow).where(ImageRow.id.in_(
                    doomed.order_by(used.desc(), ImageRow.id.desc()).offset(max_images)))).rowcount
            if max_age is not None:
                removed["translations"] = session.execute(delete(TranslationRunRow).where(
                    TranslationRunRow.created < now - max_age)).rowcount
            referenced = (select(OCRRunRow.text_id).union(
                select(TranslationRunRow.text_id), select(TranslationRunRow.result_id),
                select(ManualTranslationRow.text_id), select(ManualTranslationRow.result_id)))
            unused = select(TextRow.id).where(TextRow.id.not_in(referenced)).with_for_update(skip_locked=True)
            removed["texts"] = session.execute(delete(TextRow).where(TextRow.id.in_(unused))).rowcount
        return removed

    # -- maintenance -------------------------------------------------------------------------------
    def integrity_problems(self, limit: int = 20) -> list[str]:
        """What is wrong with the stored data; empty when the store is sound. On both databases: rows
        pointing to a missing row (a restore with its checks off, a copied file) and runs written in
        part (each is written in one transaction, so a crash must leave all of it or none); on SQLite
        also the file's own check. At most `limit` findings of each kind."""
        problems: list[str] = []
        with self.engine.connect() as connection:
            if self.engine.dialect.name == "sqlite":
                problems += [row[0] for row in connection.exec_driver_sql("PRAGMA integrity_check") if row[0] != "ok"]
            for table in Base.metadata.sorted_tables:
                key = next(iter(table.primary_key.columns))
                for foreign_key in sorted(table.foreign_keys, key=lambda fk: fk.parent.name):
                    parent = foreign_key.column.table.alias("parent")
                    parent_key = parent.c[foreign_key.column.name]
                    dangling = connection.execute(
                        select(key).select_from(table.outerjoin(parent, foreign_key.parent == parent_key))
                        .where(foreign_key.parent.is_not(None), parent_key.is_(None)).order_by(key).limit(limit))
                    problems += [f"{table.name} row {row_id} points to a missing {foreign_key.column.table.name} "
                                 f"row ({foreign_key.parent.name})" for row_id in dangling.scalars()]
            problems += self._half_written(connection, limit)
        return problems

    def coverage(self) -> str:
        """What `integrity_problems` looks at, in the line the check command ends with."""
        tables = Base.metadata.sorted_tables
        covered = [f"{sum(len(table.foreign_keys) for table in tables)} foreign keys of {len(tables)} tables",
                   "runs written in part (blocks, lines, boxes, OCR)"]
        if self.engine.dialect.name == "sqlite":
            covered.insert(0, "SQLite's integrity_check")
        return f"checked: {', '.join(covered)}; not: whether stored texts are what the models give now"

    def counts(self) -> dict[str, int]:
        """What the reader would miss, counted: images, machine and manual translations, glossary terms."""
        with self._session() as session:
            count = select(func.count())
            return {"images": session.scalar(count.select_from(ImageRow)),
                    "machine translations": session.scalar(count.select_from(TranslationRunRow)),
                    "manual translations": session.scalar(count.select_from(ManualTranslationRow)),
                    "glossary terms": session.scalar(count.select_from(GlossaryRow))}

    @staticmethod
    def _half_written(connection: Connection, limit: int) -> list[str]:
        """Runs some of whose rows are missing: block positions, lines and boxes are numbered from 0
        without gaps, and an OCR run covers every block of its box run or none."""
        block, single, ocr = BlockRow.__table__.c, SingleBoxRow.__table__.c, OCRRunRow.__table__.c
        problems = []

        def gapped(column, *group):
            """Groups whose `column` values are not exactly 0..n-1."""
            count = func.count()
            return (select(*group, count, func.min(column), func.max(column)).group_by(*group)
                    .having(or_(func.min(column) != 0, func.max(column) + 1 != count,
                                func.count(column.distinct()) != count)).order_by(*group).limit(limit))

        for run_id, count, low, high in connection.execute(gapped(block.position, block.run_id)):
            problems.append(f"box run {run_id} is half written: its {count} blocks are at positions {low}..{high}")
        lines = select(single.block_id, single.line).distinct().subquery()
        for block_id, count, low, high in connection.execute(gapped(lines.c.line, lines.c.block_id)):
            problems.append(f"block {block_id} is half written: its {count} lines are numbered {low}..{high}")
        for block_id, line, count, low, high in connection.execute(
                gapped(single.position, single.block_id, single.line)):
            problems.append(f"block {block_id} is half written: line {line} has {count} boxes at {low}..{high}")
        blocks_per_run = (select(block.run_id, func.count().label("blocks")).group_by(block.run_id).subquery())
        covered = (select(block.run_id, ocr.model, ocr.lang, ocr.options, func.count().label("read"))
                   .select_from(OCRRunRow.__table__.join(BlockRow.__table__, block.id == ocr.block_id))
                   .group_by(block.run_id, ocr.model, ocr.lang, ocr.options).subquery())
        for run_id, model, read, blocks in connection.execute(
                select(covered.c.run_id, covered.c.model, covered.c.read, blocks_per_run.c.blocks)
                .join(blocks_per_run, blocks_per_run.c.run_id == covered.c.run_id)
                .where(covered.c.read != blocks_per_run.c.blocks).order_by(covered.c.run_id).limit(limit)):
            problems.append(f"box run {run_id} is half written: OCR by {model} for {read} of its {blocks} blocks")
        return problems


class StoreProblem(RuntimeError):
    """A copy of a store that its check found problems in: it is not used."""


def _sqlite_copy(source: Path, target: Path) -> None:
    """SQLite's online backup API, in one step: the source as one read transaction saw it (writers, in
    WAL mode, neither wait for it nor disturb it), written into `target` through SQLite, its journal
    included. The source must exist (it is never created)."""
    if not source.is_file():
        raise FileNotFoundError(f"no SQLite database at {source}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(f"{source.resolve().as_uri()}?mode=rw", uri=True, timeout=60)) as reading, \
            closing(sqlite3.connect(target, timeout=60)) as writing:
        reading.backup(writing)


def _checked_copy(source: Path, copy: Path) -> dict[str, int]:
    """`source` copied to `copy`, brought to this release's schema and checked: what it holds; a copy
    with problems is deleted and StoreProblem says which."""
    for leftover in (copy, Path(f"{copy}-wal"), Path(f"{copy}-shm")):
        leftover.unlink(missing_ok=True)
    _sqlite_copy(source, copy)
    store = Store(f"sqlite:///{copy}")
    try:
        problems, counts = store.integrity_problems(), store.counts()
    finally:
        store.close()
        Path(f"{copy}.in-use").unlink(missing_ok=True)
    if problems:
        copy.unlink()
        raise StoreProblem("the copy is not consistent, nothing was replaced:\n" + "\n".join(problems))
    return counts


def backup_sqlite(database: Path, destination: Path) -> dict[str, int]:
    """A consistent copy of the SQLite store at `database`, which a server may be writing meanwhile, at
    `destination`: checked before it replaces the file there (a previous backup) in one rename. What
    it holds."""
    if destination.exists() and destination.resolve() == database.resolve():
        raise StoreInUse(f"{destination} is the store itself: back it up to another file")
    partial = destination.with_name(f".{destination.name}.partial")
    counts = _checked_copy(database, partial)
    marker = _in_use_marker(str(destination), exclusive=True)  # not onto a store something has open
    try:
        for stale in (Path(f"{destination}-wal"), Path(f"{destination}-shm")):
            stale.unlink(missing_ok=True)  # a journal left beside a file there must not be applied to this one
        os.replace(partial, destination)
    finally:
        marker.close()
        Path(f"{destination}.in-use").unlink(missing_ok=True)
    return counts


def restore_sqlite(backup: Path, database: Path) -> dict[str, int]:
    """The SQLite store at `database` replaced by the backup at `backup`, which is copied, brought to this
    release's schema and checked first (the backup file itself is left as it is). Refused while a
    server or a command has the store open: requests in flight would write what they read before the
    restore into the restored store, and ids would clash. What it holds now."""
    if database.exists() and backup.resolve() == database.resolve():
        raise StoreInUse(f"{backup} is the store itself")
    database.parent.mkdir(parents=True, exist_ok=True)
    marker = _in_use_marker(str(database), exclusive=True)  # servers starting meanwhile refuse to open it
    restoring = database.with_name(f".{database.name}.restoring")
    try:
        counts = _checked_copy(backup, restoring)
        _sqlite_copy(restoring, database)  # through SQLite: a journal the store had is rolled back first
    finally:
        marker.close()
        for leftover in (restoring, Path(f"{restoring}-wal"), Path(f"{restoring}-shm")):
            leftover.unlink(missing_ok=True)
    return counts


def _postgres_commands(url, command: str, path: Path) -> str:
    """What pg_dump or pg_restore does for a PostgreSQL store (libpq's URL; the password masked: give it
    in PGPASSWORD or ~/.pgpass)."""
    where = url.set(drivername="postgresql").render_as_string(hide_password=True)
    if command == "backup":
        return (f"backups of PostgreSQL are pg_dump's (consistent while the server runs):\n"
                f"  pg_dump --format=custom --file={path} '{where}'")
    return (f"restores of PostgreSQL are pg_restore's (stop the server first):\n"
            f"  pg_restore --clean --if-exists --no-owner --single-transaction --dbname='{where}' {path}\n"
            f"then check the store: python -m service.store check")


def main(argv: list[str] | None = None) -> int:
    """The operator's commands: `python -m service.store check|prune|backup|restore [...] [DATABASE_URL]`."""
    import argparse

    from sqlalchemy.engine import make_url

    from core.settings import AppArgs, RetentionSettings

    parser = argparse.ArgumentParser(prog="python -m service.store", description="Maintenance of the server's store.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "check", help="look for problems, exit 1 on one",
        description="Checks, on SQLite and PostgreSQL: rows pointing to a missing row (every foreign key) and runs "
                    "written in part (gaps in the numbering of blocks, lines or boxes; OCR of only some blocks "
                    "of a box run); on SQLite also the file itself (SQLite's integrity_check). It does not check "
                    "whether stored texts are what the models would give now. Prints each problem, or that the "
                    "store is consistent, then what it checked; exits 1 on a problem.")
    prune = commands.add_parser("prune", help="forget what the retention policy says (see args.retention)")
    prune.add_argument("--max-age-days", type=float, help="forget images unused for this many days")
    prune.add_argument("--max-images", type=int, help="keep only this many most recently used images")
    prune.add_argument("--profiles-unused-days", type=float,
                       help="revoke reader profiles unused for this many days (see args.profiles.expire_after_days)")
    backup = commands.add_parser(
        "backup", help="copy a SQLite store, consistently, while the server runs",
        description="SQLite's online backup of the store into DEST: the store as one transaction saw it, "
                    "while the server goes on writing; checked (as `check` does) before it replaces DEST. "
                    "PostgreSQL: prints the pg_dump command instead.")
    backup.add_argument("destination", type=Path, metavar="DEST")
    restore = commands.add_parser(
        "restore", help="replace a SQLite store with a backup (the server stopped)",
        description="Replaces the store with the backup SRC, checked first and brought to this release's "
                    "schema (SRC itself is not changed). Refused while a server has the store open: stop it "
                    "first; a server started meanwhile refuses to open the store until the restore has "
                    "finished. PostgreSQL: prints the pg_restore command instead.")
    restore.add_argument("source", type=Path, metavar="SRC")
    for subcommand in commands.choices.values():
        subcommand.add_argument("database_url", nargs="?", help="default: the server's (environment, data folder)")
    options = parser.parse_args(argv)
    url = make_url(options.database_url or AppArgs().resolved_database_url)
    where = url.render_as_string(hide_password=True)
    if options.command in ("backup", "restore"):
        path = options.destination if options.command == "backup" else options.source
        if url.get_backend_name() != "sqlite":
            print(_postgres_commands(url, options.command, path))
            return 2
        try:
            if options.command == "backup":
                counts = backup_sqlite(Path(url.database), path)
            else:
                counts = restore_sqlite(path, Path(url.database))
        except (StoreInUse, StoreProblem, FileNotFoundError, sqlite3.Error) as exc:
            print(f"{options.command} refused: {exc}", file=sys.stderr)
            return 1
        held = ", ".join(f"{count} {kind}" for kind, count in counts.items())
        print(f"backed up {where} to {path}: {held}" if options.command == "backup"
              else f"restored {where} from {path}: {held}")
        return 0
    store = Store(url.render_as_string(hide_password=False))
    try:
        if options.command == "prune":
            max_age = timedelta(days=options.max_age_days) if options.max_age_days is not None else None
            removed = store.prune(max_age, options.max_images)
            print(f"pruned {where}: " + ", ".join(f"{count} {kind}" for kind, count in removed.items()))
            if options.profiles_unused_days is not None:
                from .retention import Retention

                expired = Retention(store, RetentionSettings()).expire_profiles(options.profiles_unused_days)
                print(f"expired {len(expired)} reader profiles unused for {options.profiles_unused_days:g} days"
                      + "".join(f"\n  {name}" for name in expired))
            return 0
        found = store.integrity_problems()
        print("\n".join(found) or f"store is consistent: {where}")
        print(store.coverage())
        return 1 if found else 0
    finally:
        store.close()


if __name__ == "__main__":
    raise SystemExit(main())
