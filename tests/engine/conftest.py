"""Session fixtures: real models saved once, archives built from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests import zoo


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def set_archive(models_dir: Path) -> Path:
    """The seed blog's composite: a CNN vmapped over a set axis, mean, a head; with samples."""
    embed = zoo.save(zoo.small_cnn(), models_dir / "embed.keras")
    head = zoo.save(zoo.dense_head(), models_dir / "head.keras")
    samples = np.random.default_rng(1).standard_normal((3, 4, 16, 16, 3)).astype("float32")
    return zoo.make_zip(models_dir / "set.zip", {
        "jaxport.toml": zoo.SET_MANIFEST.encode(), "embed.keras": embed, "head.keras": head,
        "samples.npz": zoo.npz_bytes(images=samples)})


@pytest.fixture(scope="session")
def two_tower_archive(models_dir: Path) -> Path:
    image = zoo.save(zoo.small_cnn(name="image"), models_dir / "image.keras")
    text = zoo.save(zoo.multi_io_model(), models_dir / "text.keras")
    return zoo.make_targz(models_dir / "towers.tar.gz", {
        "jaxport.toml": zoo.TWO_TOWER_MANIFEST.encode(), "image.keras": image,
        "text.keras": text})


@pytest.fixture(scope="session")
def nested_archive(models_dir: Path) -> Path:
    embed = zoo.save(zoo.small_cnn(name="cell"), models_dir / "cell.keras")
    return zoo.make_zip(models_dir / "nested.zip", {
        "bundle/jaxport.toml": zoo.NESTED_MANIFEST.encode(), "bundle/embed.keras": embed})
