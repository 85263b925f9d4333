"""Loading training sets from every supported source, and a clear error for every bad one."""

import io
import pickle
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from pspc_core import DatasetError, load_dataset
from pspc_core.edm_zip import write_edm_zip


def _images(n=6, c=3, r=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, c, r, r), dtype=np.uint8)


def _save_png(path, img_chw):
    path.parent.mkdir(parents=True, exist_ok=True)
    hwc = img_chw.transpose(1, 2, 0)
    Image.fromarray(hwc[..., 0] if hwc.shape[2] == 1 else hwc).save(path)


def test_edm_zip_round_trip_with_labels(tmp_path):
    imgs, labels = _images(), np.array([0, 1, 2, 0, 1, 2])
    write_edm_zip(imgs, labels, tmp_path / "d.zip")
    ds = load_dataset(tmp_path / "d.zip")
    assert np.array_equal(ds.images.numpy(), imgs)
    assert ds.labels.tolist() == labels.tolist()
    assert (ds.resolution, ds.channels, len(ds)) == (8, 3, 6)
    with zipfile.ZipFile(tmp_path / "d.zip") as zf:
        assert zf.namelist()[0] == "00000/img00000000.png"
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())


def test_xflip_appends_flipped_copies_and_max_size_keeps_the_first(tmp_path):
    write_edm_zip(_images(), None, tmp_path / "d.zip")
    ds = load_dataset(tmp_path / "d.zip", xflip=True, max_size=4)
    assert len(ds) == 8
    assert np.array_equal(ds.images[4:].numpy(), ds.images[:4].numpy()[..., ::-1])


def test_reference_cifar_zip_has_the_reference_pixels(shared):
    ref = np.load(shared / "reference" / "pspc" / "data.npz")["cifar1k_imgs"]
    ds = load_dataset(shared / "data" / "cifar10-train-1k-32.zip")
    assert np.array_equal(ds.images.numpy(), ref)
    assert ds.labels.bincount().tolist() == [100] * 10


def test_folder_with_class_subfolders_and_grayscale(tmp_path):
    imgs = _images(4, c=1)
    for i, img in enumerate(imgs):
        _save_png(tmp_path / ("cats" if i < 2 else "dogs") / f"{i}.png", img)
    ds = load_dataset(tmp_path)
    assert ds.channels == 1 and ds.labels.tolist() == [0, 0, 1, 1]
    assert np.array_equal(ds.images.numpy(), imgs)


@pytest.mark.parametrize("layout", ["nchw", "nhwc", "npz"])
def test_numpy_arrays_in_both_layouts(tmp_path, layout):
    imgs = _images()
    if layout == "npz":
        np.savez(tmp_path / "d.npz", images=imgs, labels=np.arange(6))
        path = tmp_path / "d.npz"
    else:
        path = tmp_path / "d.npy"
        np.save(path, imgs if layout == "nchw" else imgs.transpose(0, 2, 3, 1))
    ds = load_dataset(path)
    assert np.array_equal(ds.images.numpy(), imgs)


def test_builtin_shapes_is_deterministic():
    a = load_dataset("builtin:shapes")
    b = load_dataset("builtin:shapes:2000:0")
    assert (len(a), a.resolution, a.channels) == (2000, 32, 3)
    assert np.array_equal(a.images.numpy(), b.images.numpy())
    assert not np.array_equal(a.images[:10].numpy(), load_dataset("builtin:shapes:10:1").images.numpy())


def _write(path, data):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("make, match", [
    (lambda p: p / "missing.zip", "does not exist"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "holds no PNG/JPEG images"),
    (lambda p: (np.save(p / "e.npy", np.zeros((0, 3, 4, 4), np.uint8)), p / "e.npy")[1], "holds no images"),
    (lambda p: (np.save(p / "s.npy", np.zeros((2, 3, 4, 5), np.uint8)), p / "s.npy")[1], "non-square"),
    (lambda p: (np.save(p / "c.npy", np.zeros((2, 5, 4, 4, 6), np.uint8)), p / "c.npy")[1], "expected"),
    (lambda p: (np.save(p / "f.npy", np.zeros((2, 3, 4, 4), np.float32)), p / "f.npy")[1], "uint8"),
    (lambda p: (np.save(p / "h.npy", np.zeros((2, 6, 4, 4), np.uint8)), p / "h.npy")[1], "6 channels"),
    (lambda p: _write(p / "bad.zip", b"not a zip"), "not a readable zip"),
    (lambda p: _write(p / "x.txt", b"hi"), "unsupported file type"),
    (lambda p: p / "builtin:nothing", "does not exist"),
])
def test_bad_datasets_get_a_clear_error(tmp_path, make, match):
    with pytest.raises(DatasetError, match=match):
        load_dataset(make(tmp_path))


def test_unknown_builtin_name():
    with pytest.raises(DatasetError, match="builtin:shapes"):
        load_dataset("builtin:cifar")


def test_mixed_sizes_name_both_files(tmp_path):
    _save_png(tmp_path / "a.png", _images(1, r=8)[0])
    _save_png(tmp_path / "b.png", _images(1, r=4)[0])
    with pytest.raises(DatasetError, match=r"mixes image sizes: a.png .* b.png"):
        load_dataset(tmp_path)


def test_corrupt_image_is_named(tmp_path):
    _save_png(tmp_path / "a.png", _images(1)[0])
    (tmp_path / "b.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DatasetError, match=r"b.png is unreadable or corrupt"):
        load_dataset(tmp_path)


def _cifar_archive(path, payload=None):
    """A tar.gz in the CIFAR-10 python layout (protocol-2 pickles of dicts of numpy arrays)."""
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as tar:
        for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
            batch = {b"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8), b"labels": [i % 10, 1, 2],
                     b"batch_label": b"x"}
            data = pickle.dumps(payload if payload is not None and i == 0 else batch, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_cifar_archive_reads_with_a_restricted_unpickler(tmp_path):
    from pspc_core.cifar_archive import read_cifar10

    _cifar_archive(tmp_path / "c.tar.gz")
    images, labels = read_cifar10(tmp_path / "c.tar.gz")
    assert images.shape == (15, 3, 32, 32) and labels.tolist()[:3] == [0, 1, 2]
    assert read_cifar10(tmp_path / "c.tar.gz", "test")[0].shape == (3, 3, 32, 32)


class Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/pspc-pwned",))


def test_cifar_archive_with_code_in_its_pickle_is_refused(tmp_path):
    from pspc_core.cifar_archive import read_cifar10

    _cifar_archive(tmp_path / "c.tar.gz", payload={b"data": Evil(), b"labels": []})
    with pytest.raises(DatasetError, match="refusing"):
        read_cifar10(tmp_path / "c.tar.gz")


def test_builtin_default_is_the_2000_image_seed_0_set():
    from pspc_core.builtin_data import is_builtin_default

    assert is_builtin_default("builtin:shapes") and is_builtin_default("builtin:shapes:2000:0")
    assert is_builtin_default(load_dataset("builtin:shapes", xflip=True))
    assert not is_builtin_default("builtin:shapes:50") and not is_builtin_default("shapes.zip")


def test_absurd_builtin_sizes_are_refused_before_drawing():
    with pytest.raises(DatasetError, match="ask for 1 to 200000"):
        load_dataset("builtin:shapes:1000000000")
