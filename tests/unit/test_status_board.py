"""The status board keeps the reports of live replicas and forgets those of replicas gone a while."""

from deployments import status_board
from deployments.status_board import Reports


def test_reports_of_live_replicas_are_read_and_old_ones_of_gone_replicas_forgotten():
    clock = [1000.0]
    board = Reports(clock=lambda: clock[0])
    board.report("app#Translator#a", {"device": "cpu"})
    board.report("app#Translator#b", {"device": "cuda"})
    assert board.read({"app#Translator#a", "app#Translator#b"}) == {"app#Translator#a": {"device": "cpu"},
                                                                    "app#Translator#b": {"device": "cuda"}}
    # b is not listed as alive: perhaps it started after the list was taken, so it is kept for now.
    assert board.read({"app#Translator#a"}) == {"app#Translator#a": {"device": "cpu"}}
    assert board.read({"app#Translator#a", "app#Translator#b"})["app#Translator#b"] == {"device": "cuda"}
    clock[0] += status_board.FORGET_AFTER_S + 1
    board.read({"app#Translator#a"})
    assert board.read({"app#Translator#a", "app#Translator#b"}) == {"app#Translator#a": {"device": "cpu"}}
