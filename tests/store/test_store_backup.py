"""Online backup and restore of the store (`python -m service.store backup|restore`): SQLite's backup
API copies a store that a server keeps writing, consistently; a restore checks the backup and
refuses while a server has the store open. PostgreSQL's are pg_dump's and pg_restore's."""

import subprocess
import sys
import threading
import time

import pytest

from core.boxes import Block, Box
from service.store import (
    Store,
    StoreInUse,
    _in_use_marker,
    main,
)
from tests.support.paths import ROOT
from tests.support.stored import BOX, OCR, TSL


def md5_of(n: int) -> str:
    return f"{n:032x}"


class Writer(threading.Thread):
    """A server's writes, one request after the other until stopped: an image's run with its OCR (one
    transaction), the texts' translations, a manual translation and a glossary term. `done` counts the
    requests whose every write has committed."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.store = Store(url)
        self.done = 0
        self.stop = threading.Event()
        self.errors: list[BaseException] = []

    def run(self) -> None:
        blocks = [Block(Box(0, 10 * n, 40, 10 * n + 8), [[Box(0, 10 * n, 40, 10 * n + 8)]]) for n in range(3)]
        try:
            while not self.stop.is_set():
                n = self.done
                texts = [f"text {n} {position}" for position in range(3)]
                self.store.replace_run(md5_of(n), BOX, OCR, blocks, texts)
                self.store.save_translations({text: text.upper() for text in texts}, TSL)
                self.store.set_manual_translation(texts[0], "en", "es", f"mine {n}")
                self.store.set_glossary_term("en", "es", f"term {n}", f"término {n}")
                self.done = n + 1
        except BaseException as exc:  # the test says what failed
            self.errors.append(exc)

    def until(self, requests: int) -> None:
        deadline = time.monotonic() + 60
        while self.done < requests and not self.errors:
            assert time.monotonic() < deadline, f"the writer did {self.done} requests in 60 s"
            time.sleep(0.01)
        assert not self.errors, self.errors

    def finish(self) -> None:
        self.stop.set()
        self.join(60)
        self.store.close()
        assert not self.errors, self.errors


def _requests_held(store: Store) -> set[int]:
    """The writer's requests the store holds all of; every other one must be wholly missing."""
    held = set()
    glossary = store.glossary("en", "es").as_dict()
    for n in range(100_000):
        found = store.find_blocks(md5_of(n), BOX)
        if found is None:
            assert f"term {n}" not in glossary
            break
        texts = store.find_ocr([s.id for s in found], OCR)
        assert sorted(texts.values()) == [f"text {n} {position}" for position in range(3)]
        if f"term {n}" in glossary:  # its last write: then every earlier one is there
            assert store.find_translations([f"text {n} 0"], TSL, True) == {f"text {n} 0": f"mine {n}"}
            assert store.find_translations([f"text {n} 1"], TSL, True) == {f"text {n} 1": f"TEXT {n} 1"}
            held.add(n)
    return held


@pytest.fixture
def writing(tmp_path):
    url = f"sqlite:///{tmp_path}/server/store.sqlite3"
    writer = Writer(url)
    writer.start()
    yield url, writer
    writer.finish()


def test_a_backup_under_load_is_consistent_and_holds_everything_committed_before_it(writing, tmp_path, capsys):
    url, writer = writing
    writer.until(30)
    committed_before = writer.done
    assert main(["backup", str(tmp_path / "backup.sqlite3"), url]) == 0
    copied_by = writer.done
    writer.until(copied_by + 5)  # the server went on writing, never locked out
    out = capsys.readouterr().out
    assert out.startswith(f"backed up {url} to {tmp_path / 'backup.sqlite3'}: ") and "glossary terms" in out
    backup = Store(f"sqlite:///{tmp_path}/backup.sqlite3")
    assert backup.integrity_problems() == []
    held = _requests_held(backup)
    assert held == set(range(len(held))) and committed_before <= len(held) <= copied_by + 1
    assert backup.counts()["images"] in (len(held), len(held) + 1)  # and maybe the next one's first transaction
    assert not list(tmp_path.glob(".backup*"))  # nothing left of the copy's making


def test_a_backup_replaces_an_older_one_and_is_restored_into_a_new_store_while_the_server_writes(
        writing, tmp_path, capsys):
    url, writer = writing
    target = tmp_path / "nightly.sqlite3"
    writer.until(5)
    assert main(["backup", str(target), url]) == 0
    writer.until(writer.done + 10)
    assert main(["backup", str(target), url]) == 0  # tomorrow's
    restored_url = f"sqlite:///{tmp_path}/elsewhere/restored.sqlite3"
    capsys.readouterr()
    assert main(["restore", str(target), restored_url]) == 0
    assert capsys.readouterr().out.startswith(f"restored {restored_url} from {target}: ")
    backup, restored = Store(f"sqlite:///{target}"), Store(restored_url)
    assert restored.integrity_problems() == [] and restored.counts() == backup.counts()
    assert _requests_held(restored) == _requests_held(backup) and len(_requests_held(backup)) >= 15
    [made] = restored.save_blocks(md5_of(10**6), BOX, [Block(Box(0, 0, 1, 1), [[Box(0, 0, 1, 1)]])])
    assert made.id > max(s.id for n in _requests_held(backup) for s in restored.find_blocks(md5_of(n), BOX))


def test_a_restore_is_refused_while_a_server_has_the_store_open(tmp_path, capsys):
    """Requests in flight would write what they read before the restore into the restored store; so the
    server is stopped first. A server that starts while a restore runs refuses to open the store."""
    url, backup_path = f"sqlite:///{tmp_path}/store.sqlite3", tmp_path / "backup.sqlite3"
    server = Store(url)
    server.set_glossary_term("en", "es", "kept", "guardado")
    assert main(["backup", str(backup_path), url]) == 0
    server.set_glossary_term("en", "es", "later", "después")
    capsys.readouterr()
    assert main(["restore", str(backup_path), url]) == 1
    refused = capsys.readouterr().err
    assert "restore refused" in refused and "stop the server first" in refused
    assert server.glossary("en", "es").as_dict() == {"kept": "guardado", "later": "después"}  # untouched
    server.close()  # the server stopped
    assert main(["restore", str(backup_path), url]) == 0
    again = Store(url)
    assert again.glossary("en", "es").as_dict() == {"kept": "guardado"} and again.integrity_problems() == []
    again.close()
    restoring = _in_use_marker(f"{tmp_path}/store.sqlite3", exclusive=True)  # what a restore holds
    with pytest.raises(StoreInUse, match="being restored"):
        Store(url)
    restoring.close()
    Store(url).close()


def test_a_restore_refuses_a_backup_with_problems_and_leaves_the_store_as_it_was(tmp_path, capsys):
    import sqlite3

    url, backup_path = f"sqlite:///{tmp_path}/store.sqlite3", tmp_path / "backup.sqlite3"
    store = Store(url)
    store.set_glossary_term("en", "es", "kept", "guardado")
    assert main(["backup", str(backup_path), url]) == 0
    store.close()
    with sqlite3.connect(backup_path) as raw:  # a row pointing to a missing one, as a hand edit could leave
        raw.execute("INSERT INTO single_boxes (block_id, line, position, l, b, r, t) VALUES (999, 0, 0, 0, 0, 1, 1)")
    capsys.readouterr()
    assert main(["restore", str(backup_path), url]) == 1
    assert "single_boxes row" in capsys.readouterr().err
    store = Store(url)
    assert store.glossary("en", "es").as_dict() == {"kept": "guardado"} and store.integrity_problems() == []
    assert main(["backup", str(tmp_path / "store.sqlite3"), url]) == 1  # never onto the store itself
    assert main(["restore", str(tmp_path / "missing.sqlite3"), f"sqlite:///{tmp_path}/other.sqlite3"]) == 1
    assert "no SQLite database" in capsys.readouterr().err and not (tmp_path / "missing.sqlite3").exists()


def test_postgresql_backups_and_restores_are_pg_dumps_and_pg_restores(postgres, capsys):
    url = postgres.new_database().replace("postgres@", "postgres:s3cret@")
    plain = url.replace("postgresql+psycopg://", "postgresql://").replace("s3cret", "***")
    assert main(["backup", "ocr.dump", url]) == 2
    out = capsys.readouterr().out
    assert f"pg_dump --format=custom --file=ocr.dump '{plain}'" in out and "s3cret" not in out
    assert main(["restore", "ocr.dump", url]) == 2
    out = capsys.readouterr().out
    assert f"pg_restore --clean --if-exists --no-owner --single-transaction --dbname='{plain}' ocr.dump" in out


def test_the_operators_backup_restore_and_check_commands(tmp_path):
    """As an operator runs them, one after the other, on a store that a server has open."""
    url = f"sqlite:///{tmp_path}/store.sqlite3"
    server = Store(url)
    server.set_manual_translation("hello", "en", "es", "¡hola!")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "service.store", *args], capture_output=True, text=True,
                              cwd=ROOT, timeout=120)

    backed_up = run("backup", str(tmp_path / "backup.sqlite3"), url)
    assert backed_up.returncode == 0 and "1 manual translations" in backed_up.stdout, backed_up.stderr
    refused = run("restore", str(tmp_path / "backup.sqlite3"), url)
    assert refused.returncode == 1 and "stop the server" in refused.stderr
    server.close()
    restored = run("restore", str(tmp_path / "backup.sqlite3"), url)
    assert restored.returncode == 0, restored.stderr
    checked = run("check", url)
    assert checked.returncode == 0 and checked.stdout.splitlines() == [
        f"store is consistent: {url}", Store(url).coverage()]
    helped = run("check", "--help")
    assert "foreign key" in helped.stdout and "integrity_check" in helped.stdout
