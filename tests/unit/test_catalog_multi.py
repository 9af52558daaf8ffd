"""Brand catalogues whose brands are folders of several reference images."""

from __future__ import annotations

import json
import pickle

import cv2
import numpy as np
import pytest

from media_ray.catalog import Brand, BrandCatalog, CatalogError


def _mark(value: int, shape=(20, 30)) -> np.ndarray:
    img = np.zeros((*shape, 4), np.uint8)
    img[..., :3] = value
    img[..., 3] = 255
    return img


def _write(path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA))


def test_a_folder_brand_holds_every_image_in_file_name_order(tmp_path):
    _write(tmp_path / "acme" / "b.png", _mark(20))
    _write(tmp_path / "acme" / "a.png", _mark(10, (12, 16)))
    _write(tmp_path / "acme" / "c.jpg", _mark(200))
    (tmp_path / "acme" / "notes.txt").write_text("not an image")
    _write(tmp_path / "globex.png", _mark(90))
    (tmp_path / "brands.json").write_text(json.dumps([{"id": "acme", "name": "Acme", "hex": "00FF00"}]))
    cat = BrandCatalog.from_folder(tmp_path)
    assert cat.ids == ["acme", "globex"]
    acme = cat["acme"]
    assert acme.name == "Acme" and acme.colour == (0, 255, 0)
    assert len(acme.images) == 3
    assert [int(i[0, 0, 0]) for i in acme.images[:2]] == [10, 20]
    assert acme.images[0].shape == (12, 16, 4) and all(i.dtype == np.uint8 and i.shape[2] == 4 for i in acme.images)
    assert acme.image is acme.images[0]
    globex = cat["globex"]
    assert len(globex.images) == 1 and globex.image is globex.images[0]


def test_the_version_follows_every_reference(tmp_path):
    _write(tmp_path / "acme" / "a.png", _mark(10))
    before = BrandCatalog.from_folder(tmp_path).version
    _write(tmp_path / "acme" / "b.png", _mark(20))
    assert BrandCatalog.from_folder(tmp_path).version != before


def test_a_brand_cannot_be_both_a_file_and_a_folder(tmp_path):
    _write(tmp_path / "acme.png", _mark(10))
    _write(tmp_path / "acme" / "a.png", _mark(20))
    with pytest.raises(CatalogError, match="both a file and a folder"):
        BrandCatalog.from_folder(tmp_path)


def test_folders_without_images_and_hidden_entries_are_not_brands(tmp_path):
    _write(tmp_path / "acme" / "a.png", _mark(10))
    (tmp_path / "empty").mkdir()
    _write(tmp_path / ".hidden" / "a.png", _mark(10))
    assert BrandCatalog.from_folder(tmp_path).ids == ["acme"]


def test_brands_built_from_one_image_keep_working():
    img = _mark(10)
    b = Brand(id="acme", name="Acme", image=img)
    assert b.image is img and len(b.images) == 1 and b.images[0] is img
    assert Brand(id="t", name="Text only").images == () and Brand(id="t", name="T").image is None
    two = Brand(id="acme", name="Acme", images=[img, _mark(20)])
    assert two.image is img and isinstance(two.images, tuple) and len(two.images) == 2
    with pytest.raises(CatalogError):
        Brand(id="acme", name="Acme", image=_mark(30), images=(img,))
    again = pickle.loads(pickle.dumps(two))  # Ray ships brands by pickle
    assert len(again.images) == 2 and np.array_equal(again.image, img)


def test_the_api_listing_counts_a_folder_brands_references(tmp_path):
    pytest.importorskip("ray")
    from deployments.app import MediaRayAPI

    _write(tmp_path / "acme" / "a.png", _mark(10))
    _write(tmp_path / "acme" / "b.png", _mark(20))
    listing = MediaRayAPI.func_or_class._brand_json(BrandCatalog.from_folder(tmp_path)["acme"])
    assert listing["has_image"] and listing["images"] == 2


def test_names_only_keeps_what_a_stage_chain_reports_under_the_same_version(tmp_path):
    for k in range(3):
        _write(tmp_path / "acme" / f"{k}.png", _mark(40 * k + 10, (200, 300)))
    _write(tmp_path / "globex.png", _mark(90, (200, 300)))
    (tmp_path / "brands.json").write_text(json.dumps([{"id": "acme", "name": "ACME", "aliases": ["Acme Co"]}]))
    catalog = BrandCatalog.from_folder(tmp_path)
    light = catalog.names_only()
    assert light.version == catalog.version
    assert [(b.id, b.name, b.aliases) for b in light] == [(b.id, b.name, b.aliases) for b in catalog]
    assert all(b.image is None and b.images == () for b in light)
    assert len(pickle.dumps(light)) * 100 < len(pickle.dumps(catalog))
    assert len(catalog["acme"].images) == 3  # the catalogue itself keeps its images
