"""Drive the Streamlit page with AppTest; importable by tests and runnable as a process.

Running it as its own process is how the outage test restarts "the UI process":
each run builds the page's resources (store, outbox, flusher) afresh from the
environment, and what survives between runs is only what is on disk.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parents[2] / "ui" / "app.py"


def open_page() -> AppTest:
    page = AppTest.from_file(str(APP), default_timeout=60)
    page.run()
    return page


def upload(page: AppTest, name: str, data: bytes, mime: str = "image/jpeg") -> AppTest:
    page.file_uploader[0].set_value((name, data, mime))
    page.run()
    return page


def give_feedback(page: AppTest, rating: str, correction: str = "") -> AppTest:
    """Choose 👍/👎 (``up``/``down``), type a correction, press Send feedback."""
    [choice] = [r for r in page.radio if r.label == "Is this caption right?"]
    choice.set_value("👍 Yes" if rating == "up" else "👎 No")
    [box] = [t for t in page.text_area if t.label.startswith("A better caption")]
    box.input(correction)
    [send] = [b for b in page.button if b.label == "Send feedback"]
    send.click()
    page.run()
    return page


def messages(page: AppTest) -> dict[str, list[str]]:
    return {
        "success": [m.value for m in page.success],
        "info": [m.value for m in page.info],
        "warning": [m.value for m in page.warning],
        "error": [m.value for m in page.error],
        "exception": [str(e.value) for e in page.exception],
    }


def main(argv: list[str]) -> None:
    """``feedback PHOTO...``: caption each photo, answer 👎 with a correction; or ``open``:
    load the page once and wait for the outbox to drain. Prints JSON."""
    command, photos = argv[0], argv[1:]
    page = open_page()
    report: dict[str, object] = {"pages": []}
    if command == "feedback":
        for photo in photos:
            upload(page, Path(photo).name, Path(photo).read_bytes())
            give_feedback(page, "down", f"a corrected caption for {Path(photo).stem}")
            report["pages"].append(messages(page))  # type: ignore[union-attr]
    elif command == "open":
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            page.run()
            if not any("waiting for the database" in w for w in messages(page)["warning"]):
                break
            time.sleep(0.5)
        report["pages"] = [messages(page)]
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1:])
