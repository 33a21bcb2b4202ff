"""UI settings: typed, read once from the environment when the page's resources are built."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from feedback.settings import FeedbackSettings


class UISettings(FeedbackSettings):
    """What the Streamlit page reads from ``CAPTIONER_*`` variables, on top of the feedback's.

    The page's process is also the feedback component's, with one environment: one
    class holds both, so the chart's ``ui.settings`` are this class's fields.
    """

    model_config = SettingsConfigDict(
        env_prefix="CAPTIONER_", extra="ignore", populate_by_name=True
    )

    service_url: str = Field(
        default="http://127.0.0.1:8000", description="the inference service's base URL"
    )
    service_timeout_seconds: float = Field(default=30.0, gt=0, description="per request")
    service_retries: int = Field(
        default=2, ge=0, le=10, description="retries on connection errors, 429 and 503"
    )
    ui_host: str = Field(default="127.0.0.1", description="Streamlit listen address")
    ui_port: int = Field(default=8501, ge=1, le=65535, description="Streamlit port")
    ui_metrics_port: int = Field(
        default=9102,
        ge=0,
        le=65535,
        description="Prometheus metrics of the UI (0: off), on the page's address (ui_host)",
    )
    max_upload_mb: int = Field(default=10, ge=1, le=200, description="largest upload")
