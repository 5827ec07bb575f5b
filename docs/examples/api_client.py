"""A Petsite API client in a page: upload a photo, wait for its result, answer.

    export PETSITE=http://127.0.0.1:8000 TOKEN=<your token, from /api/token/>
    python docs/examples/api_client.py rex.jpg           # prints the answer
    python docs/examples/api_client.py rex.jpg beagle    # and says it is a beagle

Only `requests` is needed. tests/api/test_client_example.py runs it against a live site.
"""
import os
import sys
import time
import uuid

import requests

WAIT = 30  # seconds the server may hold one request open before answering (?wait=, at most 30)
BUSY = (429, 503)  # "ask again later": Retry-After says when


class PetsiteError(Exception):
    """An answer that is not a success: the API's problem details (RFC 9457)."""

    def __init__(self, response: requests.Response) -> None:
        self.problem = response.json() if "json" in response.headers.get("Content-Type", "") else {}
        self.status = response.status_code
        super().__init__(f"{self.status}: {self.problem.get('detail') or self.problem.get('title') or response.text}")


def session_for(token: str) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"
    return session


def upload(session: requests.Session, site: str, path: str) -> str:
    """Send one photo; answer its address in the API. The Idempotency-Key makes a retry of a
    request whose answer was lost safe: the server answers it as it did the first time."""
    key = str(uuid.uuid4())
    for _ in range(3):
        try:
            with open(path, "rb") as photo:
                response = session.post(
                    f"{site}/api/v1/images/", files={"image": photo}, headers={"Idempotency-Key": key}, timeout=60
                )
            break
        except requests.ConnectionError:
            continue  # the same key: the photo is stored once whatever happened to the first try
    else:
        raise ConnectionError(f"{site} did not answer")
    if response.status_code != 202:
        raise PetsiteError(response)
    return response.headers["Location"]


def wait_for_result(session: requests.Session, url: str, patience: float = 300) -> dict:
    """The image once it is finished: each request waits on the server up to WAIT seconds,
    so the answer comes as soon as the worker is done, without polling."""
    deadline = time.monotonic() + patience
    while True:
        response = session.get(url, params={"wait": WAIT}, timeout=WAIT + 10)
        if response.status_code in BUSY:  # too many waits running: ask again when told
            time.sleep(float(response.headers.get("Retry-After", 1)))
            continue
        if response.status_code != 200:
            raise PetsiteError(response)
        image = response.json()
        if image["finished"] or time.monotonic() >= deadline:
            return image


def answer(session: requests.Session, image: dict, label: str | None = None) -> dict:
    """Tell Petsite whether it was right: "correct", or "wrong" with the right breed key."""
    body = {"answer": "correct"} if label is None else {"answer": "wrong", "label": label}
    response = session.post(f"{image['url']}feedback/", json=body, timeout=30)
    if response.status_code != 200:
        raise PetsiteError(response)
    return response.json()


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    site, session = os.environ.get("PETSITE", "http://127.0.0.1:8000"), session_for(os.environ["TOKEN"])
    image = wait_for_result(session, upload(session, site, argv[1]))
    if image["status"] != "done":
        print(f"Not classified: {image['message']} ({image['error_code']})")
        return 1
    print(f"{image['headline']} ({image['confidence']:.0%}, model {image['model_version']})")
    if len(argv) == 3:
        image = answer(session, image, argv[2])
        print(f"Thank you: you said {image['true_label_name']}.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
