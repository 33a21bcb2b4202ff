"""``--encoder-weights imagenet`` the Keras way: Keras downloads into its cache when the
network is there, and the command fails at once, saying what to put where, when not.

"The network" is a real HTTP server on loopback standing in for Keras's download
host; each run is a subprocess whose proxy variables point at a closed loopback port,
so nothing can leave loopback.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from tests.helpers import REPO, SHARED_DATA, ArchiveServer, offline_env
from tests.unit.test_encoders import MOBILENET_96, images, save_legacy_h5
from training.backbones import build_backbone
from training.run_dir import RunDir

# Run in a subprocess: Keras reads KERAS_HOME once, at import.
DOWNLOAD = """
import sys, numpy as np, keras.src.applications.mobilenet_v2 as keras_module
from training import encoder_weights, encoders
keras_module.BASE_WEIGHT_PATH = encoder_weights.KERAS_ORIGIN = sys.argv[1] + "/mobilenet_v2/"
encoder = encoders.build_encoder("mobilenet_v2", "grid", input_size=96, weights="imagenet")
np.save(sys.argv[2], encoder.predict_on_batch(np.load(sys.argv[3])))
"""


def test_keras_downloads_missing_imagenet_weights_into_its_cache(tmp_path):
    source = build_backbone("mobilenet_v2", 96)
    served = tmp_path / MOBILENET_96
    save_legacy_h5(source, served)
    x = images(96)
    np.save(tmp_path / "x.npy", x)
    home = tmp_path / "keras"
    with ArchiveServer({f"mobilenet_v2/{MOBILENET_96}": served.read_bytes()}) as server:
        done = subprocess.run(
            [sys.executable, "-c", DOWNLOAD, server.url, tmp_path / "y.npy", tmp_path / "x.npy"],
            cwd=REPO,
            env=offline_env(KERAS_HOME=str(home), TF_CPP_MIN_LOG_LEVEL="2"),
            capture_output=True,
            text=True,
            timeout=180,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    downloads = [e for e in server.log if e["path"] == f"/mobilenet_v2/{MOBILENET_96}"]
    assert len(downloads) == 1 and downloads[0]["status"] == 200
    cached = home / "models" / MOBILENET_96
    assert cached.read_bytes() == served.read_bytes()
    expected = np.asarray(source(x, training=False)).reshape(2, 9, 1280)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-4, atol=1e-6)


def test_train_with_imagenet_offline_names_the_file_and_the_folder(tmp_path):
    home = tmp_path / "keras"
    done = subprocess.run(
        [sys.executable, "-c", "from cli.main import main; main()", "train",
         "--dataset", "flickr8k[train]-8s1", "--val-dataset", "flickr8k[val]-8s1",
         "--data-root", str(SHARED_DATA), "--architecture", "merge",
         "--encoder", "mobilenet_v2", "--encoder-weights", "imagenet",
         "--run-dir", str(tmp_path / "run"), "--epochs", "1"],
        cwd=REPO,
        env=offline_env(KERAS_HOME=str(home)),  # Keras's real host, through a dead proxy
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 1
    wanted = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    assert f"Keras wants {wanted} in {home / 'models'}/" in done.stderr
    assert "storage.googleapis.com" in done.stderr and "Traceback" not in done.stderr
    assert not RunDir(tmp_path / "run").model_dir.exists()
