"""Drive a running server the way the browser extension does, on an image you give it.

Handshake, set languages and models, the md5-only lazy call (406 the first time), the work call
with the image, then the lazy call again many times. Prints the blocks it got back and the lazy
call's latency side by side with the cheapest endpoint's (GET /get_active_options), measured
interleaved in one run so the machine's noise hits both alike.

    .venv/bin/python bench/extension_session.py photo.jpg --ocr easyocr/en

A server that asks this client for the API token (docs/security.md) gets it from `--token`, else from
$OCR_SERVE_API_TOKEN.
"""

import argparse
import base64
import hashlib
import os
import statistics
import sys
import time
from pathlib import Path

import httpx


def _check(response: httpx.Response, expected: int = 200) -> dict:
    if response.status_code != expected:
        sys.exit(f"{response.request.method} {response.request.url.path}: expected {expected}, "
                 f"got {response.status_code} {response.text}")
    return response.json()


def _timed(call) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", type=Path)
    parser.add_argument("--server", default="http://127.0.0.1:4000")
    parser.add_argument("--src", default="en")
    parser.add_argument("--dst", default="es")
    parser.add_argument("--box", default="easyocr/craft")
    parser.add_argument("--ocr", default="easyocr/en")
    parser.add_argument("--tsl", default="apertium/eng-spa")
    parser.add_argument("--repeat", type=int, default=50, help="lazy calls to time (default 50)")
    parser.add_argument("--token", default=os.environ.get("OCR_SERVE_API_TOKEN"),
                        help="the server's API token, where it asks this client for one")
    args = parser.parse_args()

    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    client = httpx.Client(base_url=args.server, timeout=600, headers=headers)
    offered = _check(client.get("/"))
    print(f"handshake: languages {offered['Languages_src']} -> {offered['Languages_dst']}")
    _check(client.post("/set_lang/", json={"lang_src": args.src, "lang_dst": args.dst}))
    offered = _check(client.get("/"))
    print(f"models for {args.src}->{args.dst}: box {offered['BOXModels']}, ocr {offered['OCRModels']}, "
          f"tsl {offered['TSLModels']}")
    _check(client.post("/set_models/", json={
        "box_model_id": args.box, "ocr_model_id": args.ocr, "tsl_model_id": args.tsl}))

    contents = base64.b64encode(args.image.read_bytes()).decode()
    md5 = hashlib.md5(contents.encode()).hexdigest()
    lazy = client.post("/run_ocrtsl/", json={"md5": md5})
    print(f"first lazy call: {lazy.status_code}")
    started = time.perf_counter()
    result = _check(client.post("/run_ocrtsl/", json={"md5": md5, "contents": contents}))["result"]
    print(f"work call: {len(result)} blocks in {time.perf_counter() - started:.1f} s")
    for block in result:
        print(f"  box {block['box']}\n    ocr: {block['ocr']!r}\n    tsl: {block['tsl']!r}")

    if _check(client.post("/run_ocrtsl/", json={"md5": md5}))["result"] != result:
        sys.exit("the lazy call returned a different result from the work call")
    lazy_ms, floor_ms = [], []
    for _ in range(args.repeat):
        lazy_ms.append(_timed(lambda: _check(client.post("/run_ocrtsl/", json={"md5": md5}))))
        floor_ms.append(_timed(lambda: _check(client.get("/get_active_options/"))))
    lazy_median, floor_median = statistics.median(lazy_ms), statistics.median(floor_ms)
    print(f"lazy md5-only call: median {lazy_median:.1f} ms over {args.repeat}; "
          f"GET /get_active_options median {floor_median:.1f} ms; ratio {lazy_median / floor_median:.2f}")


if __name__ == "__main__":
    main()
