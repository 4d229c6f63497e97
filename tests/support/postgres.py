"""A throwaway PostgreSQL server on loopback for the tests, from the Debian package's binaries.

`make test` installs the `postgresql` package (as root); where it is missing the PostgreSQL tests
fail and say what to install, unless OCR_SERVE_SKIP_POSTGRES=1 asks to skip them. The server runs
as the `postgres` user when the tests run as root (PostgreSQL
refuses to run as root), with its data in a fresh folder, listening on 127.0.0.1 only.
"""

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from sqlalchemy import create_engine, text

from .ports import free_port


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None




class PostgresServer:
    def __init__(self):
        self.bin = _bin_dir()
        if self.bin is None:
            raise FileNotFoundError("PostgreSQL is not installed (apt-get install postgresql)")
        self.root = Path(tempfile.mkdtemp(prefix="ocr-serve-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chmod(self.root, 0o755)
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        self.start()
        self.admin = create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")
        self.databases = 0

    def start(self) -> None:
        """Start the server (again, after `shut_down`: same data, same port)."""
        self._run("pg_ctl", "-D", str(self.data), "-w", "-l", str(self.root / "server.log"), "start", "-o",
                  f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off")

    def shut_down(self) -> None:
        """Stop the server as an operator's restart does (`-m fast`: its clients are disconnected)."""
        self._run("pg_ctl", "-D", str(self.data), "-w", "-m", "fast", "stop")

    def restart(self) -> None:
        """An operator's restart (`shut_down`, then `start`): every client connection is dropped; the
        server's own admin connection is opened again on its next use."""
        self.shut_down()
        self.start()
        self.admin.dispose()

    def _run(self, program: str, *args: str) -> None:
        subprocess.run([*self.as_user, str(self.bin / program), *args], check=True, capture_output=True)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """The URL of a new, empty database."""
        self.databases += 1
        name = f"test_{self.databases}"
        with self.admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {name}"))
        return self.url(name)

    def stop(self) -> None:
        self.admin.dispose()
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
