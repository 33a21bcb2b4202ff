"""The Streamlit page: caption an image, see alternatives and attention, give feedback.

Run by ``captioner ui`` (or ``streamlit run ui/app.py``). It talks to the
inference service over HTTP and stores feedback through the ``feedback`` component;
when the database is unreachable the feedback waits in the durable outbox. User text is
only ever shown through ``st.text``/``st.dataframe`` or escaped markdown, so a
correction with markup renders as the characters typed.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_start

import streamlit as st

from captioner import __version__
from feedback.limits import client_key
from feedback.metrics import serve_metrics
from feedback.record import MAX_CORRECTION, FeedbackError, make_feedback
from feedback.runtime import FeedbackRuntime, build
from feedback.store import StoreUnavailable
from feedback.submit import submit
from ui.attention import attention_maps
from ui.client import CaptionClient, CaptionError
from ui.markup import escape_markdown
from ui.settings import UISettings

IMAGE_TYPES = ["jpg", "jpeg", "png", "webp", "bmp", "gif"]
RATINGS = {"👍 Yes": "up", "👎 No": "down"}


@dataclass
class Resources:
    """What every session of this process shares."""

    settings: UISettings
    client: CaptionClient
    feedback: FeedbackRuntime


@st.cache_resource
def resources() -> Resources:
    """Built once per UI process: settings, service client and the feedback component.

    Its flusher starts here unless the launcher's already delivers the outbox.
    """
    from telemetry.tracing import build_tracer_provider

    settings = UISettings()
    feedback = build(settings)
    feedback.ensure_indexes()
    if settings.ui_metrics_port:
        serve_metrics(feedback.metrics, settings.ui_metrics_port, host=settings.ui_host)
    feedback.start()
    tracer = build_tracer_provider("captioner-ui").get_tracer("captioner.ui")
    client = CaptionClient(
        settings.service_url,
        settings.service_timeout_seconds,
        settings.service_retries,
        tracer=tracer,
    )
    return Resources(settings, client, feedback)


def caption_page(r: Resources) -> None:
    st.title("Caption an image")
    source = st.radio("Image from", ["Upload", "Camera"], horizontal=True, key="source")
    if source == "Camera":
        shot = st.camera_input("Take a photo", key="camera")
    else:
        shot = st.file_uploader("Drop an image here, or browse", type=IMAGE_TYPES, key="upload")
    beam = st.slider("Alternatives (beam size)", 1, 5, 3, key="beam")
    if shot is None:
        st.info("Upload an image to get its caption.")
        return
    data = shot.getvalue()
    if len(data) > r.settings.max_upload_mb << 20:
        st.error(f"That image is larger than {r.settings.max_upload_mb} MB. Try a smaller one.")
        return
    digest = hashlib.sha256(data).hexdigest()
    if st.session_state.get("asked") != (digest, beam):
        st.session_state.asked = (digest, beam)
        st.session_state.result, st.session_state.error = None, None
        with st.spinner("Captioning..."):
            try:
                st.session_state.result = r.client.caption(data, shot.name, beam)
            except CaptionError as exc:
                st.session_state.error = exc
    left, right = st.columns([1, 1])
    try:
        left.image(data, caption=shot.name, width="stretch")
    except Exception:  # not an image Streamlit can show: the service says why below
        left.text("(no preview)")
    error: CaptionError | None = st.session_state.error
    if error is not None:
        right.error(error.message)
        if error.detail:
            right.caption("Service said:")
            right.text(error.detail)
        return
    result = st.session_state.result
    body = result.body
    right.subheader(escape_markdown(result.caption))
    model = body["model"]
    right.caption(
        escape_markdown(
            f"{model['name']} {model['version']} ({model['variant']}, "
            f"{model['execution_provider']}) · {result.seconds * 1000:.0f} ms"
        )
    )
    right.dataframe(
        [
            {"rank": i + 1, "caption": c["caption"], "log-probability": c["log_probability"]}
            for i, c in enumerate(body["candidates"])
        ],
        hide_index=True,
    )
    if body.get("attention"):
        with st.expander("Where the model looked, word by word"):
            words = [*result.caption.split(), "<end>"]
            maps = attention_maps(data, body["attention"]["grid"], body["attention"]["weights"])
            columns = st.columns(6)
            for i, (word, picture) in enumerate(zip(words, maps, strict=False)):
                columns[i % 6].image(picture, caption=word)
    feedback_form(r, result, data, digest)


def feedback_form(r: Resources, result, data: bytes, digest: str) -> None:
    with st.form("feedback"):
        choice = st.radio("Is this caption right?", list(RATINGS), index=None, horizontal=True)
        correction = st.text_area("A better caption (optional)", max_chars=MAX_CORRECTION)
        st.caption(
            "Your rating, your caption and this image are stored to improve the model."
            if r.settings.store_images
            else "Your rating and your caption are stored to improve the model; the image is not."
        )
        sent = st.form_submit_button("Send feedback")
    if not sent:
        return
    if choice is None:
        st.warning("Choose 👍 or 👎 first.")
        return
    model = result.body["model"]
    try:
        feedback = make_feedback(
            request_id=result.request_id,
            model_name=model["name"],
            model_version=model["version"],
            caption=result.caption,
            rating=RATINGS[choice],
            correction=correction,
            image_sha256=digest,
            ui_version=__version__,
            image=data if r.settings.store_images else None,
        )
    except FeedbackError as exc:
        st.error(f"That feedback was not accepted: {exc}")
        return
    peer = st.context.ip_address  # None where Streamlit does not know it
    client = client_key(
        dict(st.context.headers),
        peer if isinstance(peer, str) else None,
        st.session_state.setdefault("client_session", uuid.uuid4().hex),
        r.settings.proxy_hops,
        r.settings.trust_iap_header,
    )
    if not r.feedback.limiter.allow(client):
        r.feedback.metrics.feedback.labels(
            model_version=feedback.model_version,
            rating=feedback.rating,
            corrected=str(feedback.correction is not None).lower(),
            outcome="rate_limited",
        ).inc()
        wait = math.ceil(r.feedback.limiter.retry_after(client))
        st.warning(
            "You have sent a lot of feedback in a short time, thank you! "
            f"Please send more in {wait} s."
        )
        return
    sent_before = st.session_state.setdefault("sent", {})
    outcome = submit(feedback, r.feedback.store, r.feedback.outbox, metrics=r.feedback.metrics)
    if outcome == "queued":
        waiting = r.feedback.outbox.depth()
        st.info(
            "The feedback database cannot be reached right now. Your feedback is queued "
            f"on this machine and will be delivered automatically ({waiting} waiting)."
        )
    elif result.request_id in sent_before:
        st.success("Your feedback was updated.")
    else:
        st.success("Thank you! Your feedback was saved.")
    sent_before[result.request_id] = feedback.rating


def feedback_page(r: Resources) -> None:
    st.title("Feedback")
    try:
        versions = r.feedback.store.model_versions()
    except StoreUnavailable:
        st.error("The feedback database cannot be reached right now.")
        return
    a, b, c = st.columns(3)
    version = a.selectbox("Model version", ["all", *versions])
    rating = b.selectbox("Rating", ["all", "up", "down"])
    since_day = c.date_input("Since", value=date.today() - timedelta(days=30))
    since = datetime.combine(since_day, day_start.min, tzinfo=UTC)
    chosen = None if version == "all" else version
    try:
        rows = r.feedback.store.recent(
            200, model_version=chosen, rating=None if rating == "all" else rating, since=since
        )
        rates = r.feedback.store.up_rate(since=since)
    except StoreUnavailable:
        st.error("The feedback database cannot be reached right now.")
        return
    st.subheader("Thumbs-up rate per model version")
    if rates:
        import pandas as pd

        frame = pd.DataFrame(rates).pivot_table(index="day", columns="model_version", values="rate")
        st.line_chart(frame)
    else:
        st.info("No feedback in this period yet.")
    st.subheader(f"Recent feedback ({len(rows)})")
    st.dataframe(
        [
            {
                "time": f.created.strftime("%Y-%m-%d %H:%M"),
                "model version": f.model_version,
                "rating": f.rating,
                "caption": f.caption,
                "correction": f.correction or "",
            }
            for f in rows
        ],
        hide_index=True,
    )
    export_button(r, since)


def export_button(r: Resources, since: datetime) -> None:
    """Export on request: reading every record on each rerun of the page would be waste."""
    import tempfile
    from pathlib import Path

    from feedback.export import ExportRules, write_dataset

    if not st.button("Prepare a training dataset from this period's feedback"):
        return
    with tempfile.TemporaryDirectory() as folder:
        try:
            rules = ExportRules.from_settings(r.settings)
            summary = write_dataset(r.feedback.store, since, Path(folder), rules)
        except StoreUnavailable:
            st.error("The feedback database cannot be reached right now.")
            return
        dataset = Path(summary["path"]).read_bytes()
    st.download_button(
        f"Download {summary['captions']} captions as a training dataset",
        dataset,
        file_name="dataset_feedback.json",
        mime="application/json",
    )


def main() -> None:
    st.set_page_config(page_title="captioner", layout="wide")
    r = resources()
    view = st.sidebar.radio("Page", ["Caption", "Feedback"], key="view")
    st.sidebar.caption(f"Service: {r.settings.service_url}")
    waiting = r.feedback.outbox.depth()
    if waiting:
        st.sidebar.warning(f"{waiting} feedback waiting for the database (queued, not lost).")
    if view == "Caption":
        caption_page(r)
    else:
        feedback_page(r)


main()
