"""A process that stores what real requests store, through the store's own API, until it is killed:
`python -m tests.support.store_writer DATABASE_URL`. It works in lockstep with the test that runs it: after
each SQL statement it prints `sql` and waits for a line on stdin, and after each commit it prints
`<run> <step>` (step: blocks, ocr, translations). The test can so kill it at a statement it names,
inside a transaction that is provably open."""

import sys

from sqlalchemy import event

from core.boxes import Block, Box
from service.store import Store

from .stored import BOX, OCR, TSL

BLOCKS = 20
STEPS = ("blocks", "ocr", "translations")


def md5_of(run: int) -> str:
    return f"{run:032x}"


def text_of(run: int, position: int) -> str:
    return f"text {run} {position}"


def _executed(*_args) -> None:
    print("sql", flush=True)
    sys.stdin.readline()  # the test answers, or kills this process here


def main(database_url: str) -> None:
    store = Store(database_url)
    event.listen(store.engine, "after_cursor_execute", _executed)
    block = Block(Box(0, 0, 40, 20), [[Box(0, 0, 18, 20), Box(20, 0, 40, 20)], [Box(0, 22, 40, 30)]])
    run = 0
    while True:
        stored = store.save_blocks(md5_of(run), BOX, [block] * BLOCKS)
        print(run, "blocks", flush=True)
        store.save_ocr({s.id: text_of(run, n) for n, s in enumerate(stored)}, OCR)
        print(run, "ocr", flush=True)
        store.save_translations({text_of(run, n): f"texto {run} {n}" for n in range(BLOCKS)}, TSL)
        print(run, "translations", flush=True)
        run += 1


if __name__ == "__main__":
    main(sys.argv[1])
