"""Session fixtures: small models trained once (fixed epochs, so machine speed changes
nothing) and the model package the service tests serve."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from training.settings import TrainSettings
from training.trainer import TrainResult, train


def train_once(tmp_path_factory, name: str, **settings) -> TrainResult:
    run_dir = tmp_path_factory.mktemp(name) / "run"
    mlruns = (run_dir.parent / "mlruns").as_uri()
    config = TrainSettings(run_dir=run_dir, val_images=100, mlflow_tracking_uri=mlruns, **settings)
    return train(config, progress=False)


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """The demo's attention model after 6 epochs (about 2.5 minutes): it looks at the image."""
    return train_once(
        tmp_path_factory,
        "trained",
        dataset="shapes[train]",
        architecture="attention",
        epochs=6,
        patience=6,
    )


@pytest.fixture(scope="session")
def trained_merge(tmp_path_factory):
    """A merge model, trained briefly (about 35 s): export parity needs trained, not good."""
    return train_once(
        tmp_path_factory,
        "trained_merge",
        dataset="shapes[train]-3000s1",
        architecture="merge",
        epochs=3,
        patience=3,
    )


@pytest.fixture(scope="session")
def served_package(trained, tmp_path_factory) -> Path:
    """The trained attention model's package (fp32 only): what the service tests serve, and
    the package test_export checks. Read-only: a test that damages it works on a copy."""
    from export.package import build_package

    return build_package(trained.model_dir, tmp_path_factory.mktemp("served") / "package")


@pytest.fixture(scope="session")
def variants_package(trained, tmp_path_factory) -> Path:
    """The trained attention model's package with every precision variant (fp16, int8),
    built only for the tests that need a variant. Read-only, like ``served_package``."""
    from export.package import build_package
    from export.variants import VARIANTS

    out = tmp_path_factory.mktemp("variants") / "package"
    return build_package(trained.model_dir, out, variants=VARIANTS)


@pytest.fixture(scope="session")
def running_service(served_package, tmp_path_factory):
    """``captioner serve`` on loopback with the served package, for the UI tests."""
    from tests.helpers import ProcessServer

    with ProcessServer(served_package, tmp_path_factory.mktemp("service") / "log") as server:
        server.wait_ready()
        yield server


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory) -> Iterator[str]:
    """``MONGODB_URI`` when set (a real MongoDB); otherwise a local nx-27017 for the session."""
    if os.environ.get("MONGODB_URI"):
        yield os.environ["MONGODB_URI"]
        return
    from feedback.localdb import LocalMongo
    from tests.helpers import free_port

    with LocalMongo(tmp_path_factory.mktemp("mongo"), port=free_port()) as local:
        yield local.uri


def pytest_configure(config):
    """Keep this process on loopback for the whole session (tests.helpers.LoopbackOnly)."""
    from urllib.parse import urlsplit

    from tests.helpers import LoopbackOnly

    external = urlsplit(os.environ["MONGODB_URI"]).hostname if "MONGODB_URI" in os.environ else None
    config.loopback_guard = LoopbackOnly(allowed=(external,) if external else ()).install()


def pytest_sessionfinish(session, exitstatus):
    """Fail the run if a test left a ``captioner serve`` process running (it would hold a
    port and a core after the suite, on a developer's machine and in CI), or if anything
    in this process tried to leave loopback (even where a library swallowed the error)."""
    from tests.helpers import ProcessServer

    guard = session.config.loopback_guard
    guard.uninstall()
    if guard.attempts:
        print(f"\nthe suite tried to leave loopback {len(guard.attempts)} time(s): "
              f"{', '.join(sorted(set(guard.attempts))[:10])}")  # fmt: skip
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

    leaked = [p for p in ProcessServer.started if p.poll() is None]
    for process in leaked:
        process.kill()
        process.wait(10)
    if leaked:
        print(f"\n{len(leaked)} captioner serve process(es) left running: {leaked[0].args}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def trained_real(tmp_path_factory):
    """A two-decoder ensemble on the real Flickr8k photos, decoding chosen on val with
    re-ranking (about 3 minutes on 2 cores); skipped where ../shared/data is absent."""
    from tests.helpers import FLICKR8K_PHOTOS, MOBILENET_WEIGHTS, SHARED_DATA
    from training.ensemble import train_model

    if not (FLICKR8K_PHOTOS.is_dir() and MOBILENET_WEIGHTS.is_file()):
        pytest.skip(f"no real photos and weights under {SHARED_DATA}")
    run_dir = tmp_path_factory.mktemp("trained_real") / "run"
    settings = TrainSettings(
        dataset="flickr8k[train]",
        data_root=SHARED_DATA,
        run_dir=run_dir,
        architecture="merge",
        encoder="mobilenet_v2",
        encoder_weights=str(MOBILENET_WEIGHTS),
        min_count=5,
        units=128,
        max_length_quantile=0.95,
        all_captions=True,
        selection="last",
        epochs=3,
        members=2,
        rerank=True,
        mlflow_tracking_uri=(run_dir.parent / "mlruns").as_uri(),
    )
    return train_model(settings, progress=False)


@pytest.fixture(scope="session")
def real_package(trained_real, tmp_path_factory) -> Path:
    """The real-photo ensemble's package: one decoder graph, the consensus files."""
    from export.package import build_package

    return build_package(trained_real.model_dir, tmp_path_factory.mktemp("real") / "package")


@pytest.fixture(scope="session")
def real_service(real_package, tmp_path_factory):
    """``captioner serve`` on loopback with the model trained on the real photos."""
    from tests.helpers import ProcessServer

    with ProcessServer(real_package, tmp_path_factory.mktemp("real_service") / "log") as server:
        server.wait_ready()
        yield server
