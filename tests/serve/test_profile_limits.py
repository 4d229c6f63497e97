"""A reader profile's share of the requests in flight on the real Serve app (issue 27): counted per
profile wherever its requests come from, so one profile's flood leaves the others answered, even when
every reader is behind the same address."""

import concurrent.futures
import threading

import httpx
from ray import serve

from core.profile_keys import key_digest, short_id
from tests.support.live import AUTH, held_upload, second_app
from tests.support.waiting import wait_for

APP, PREFIX = "ocr_translate_profile_limits", "/profile-limits"
SHARE = 4
"""A profile's share of the requests in flight (`profiles.max_requests_in_flight`), and one address's."""
READERS = 50


def test_fifty_profiles_and_a_burst_across_them_one_flooding_gets_503s_while_the_others_keep_answering(
        live, tmp_path):
    """Every request comes from 127.0.0.1, whose own share is SHARE too: under a profile's address they
    count per profile. One profile holds more slow uploads than its share while the other 49 send one
    request each at once: all 49 are answered, the flooder's extra requests get 503 with Retry-After."""
    limits = {"max_requests_in_flight": 90, "max_requests_in_flight_per_client": SHARE, "body_read_timeout_s": 40}
    with second_app(live, APP, PREFIX, tmp_path, limits=limits, profiles={"max_requests_in_flight": SHARE}) as url, \
            httpx.Client(base_url=url, timeout=60) as client:
        made = [client.post("/profiles/", json={"name": f"reader-{i}"}, headers=AUTH) for i in range(READERS)]
        flooder, *others = [url + response.json()["path"] for response in made]
        flooders_id = short_id(key_digest(flooder.rsplit("/", 1)[1]))
        ingress = serve.get_deployment_handle("Ingress", app_name=APP)

        def held_by_the_flooder() -> int:
            return ingress.stats.remote().result()["in_flight_by_profile"].get(flooders_id, 0)

        release = threading.Event()
        with concurrent.futures.ThreadPoolExecutor(SHARE + 4 + READERS) as pool:
            try:
                flood = [pool.submit(held_upload, flooder, release) for _ in range(SHARE + 4)]
                wait_for(lambda: held_by_the_flooder() == SHARE, 60, "the flooder's share filling", interval_s=0.1)
                burst = [pool.submit(httpx.get, f"{address}/", timeout=60) for address in others]
                refused = [pool.submit(httpx.get, f"{flooder}/", timeout=60) for _ in range(4)]
                assert [future.result().status_code for future in burst] == [200] * (READERS - 1)
                for future in refused:
                    answer = future.result()
                    assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
                    assert f"This reader profile has {SHARE} requests in flight, its share" in answer.json()["error"]
                assert held_by_the_flooder() == SHARE  # held all through the burst
                assert client.get("/").status_code == 200  # the bare paths: the address's own share
            finally:
                release.set()
            statuses = sorted(future.result() for future in flood)  # the held ones answered once their bodies came
            assert statuses[SHARE:] == [503] * 4 and 503 not in statuses[:SHARE] and 408 not in statuses
