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


@pytest.mark.parametrize("spec, match", [
    ("builtin:shapes:10:-1", "has seed -1; use a seed from 0 to 9223372036854775807"),
    (f"builtin:shapes:10:{2**63}", f"has seed {2**63}; use a seed from 0"),
    ("builtin:shapes:10:x", "use builtin:shapes, builtin:shapes:N or builtin:shapes:N:SEED"),
    ("builtin:shapes:1_0", "use builtin:shapes, builtin:shapes:N or builtin:shapes:N:SEED"),
    ("builtin:shapes: 10", "use builtin:shapes, builtin:shapes:N or builtin:shapes:N:SEED"),
    ("builtin:shapes:10:0:1", "use builtin:shapes, builtin:shapes:N or builtin:shapes:N:SEED"),
    ("builtin:shapes:10:" + "9" * 5000, "use builtin:shapes, builtin:shapes:N or builtin:shapes:N:SEED"),
])
def test_bad_builtin_specs_name_the_valid_form(spec, match):
    with pytest.raises(DatasetError, match=match):
        load_dataset(spec)


def test_the_largest_builtin_seed_is_accepted():
    from pspc_core.builtin_data import parse_builtin

    assert parse_builtin(f"shapes:10:{2**63 - 1}") == (10, 2**63 - 1)


def _zip_with_json(path, meta: str, n=3):
    """An EDM zip of `n` 4x4 images whose dataset.json holds the text `meta`."""
    from pspc_core.edm_zip import archive_name

    with zipfile.ZipFile(path, "w") as zf:
        for i, img in enumerate(_images(n, r=4)):
            buf = io.BytesIO()
            Image.fromarray(img.transpose(1, 2, 0)).save(buf, format="PNG")
            zf.writestr(archive_name(i), buf.getvalue())
        zf.writestr("dataset.json", meta)
    return path


def _entries(*labels, names=None):
    names = names or [f"00000/img0000000{i}.png" for i in range(len(labels))]
    return '{"labels": [' + ", ".join(f'["{n}", {lab}]' for n, lab in zip(names, labels)) + "]}"


@pytest.mark.parametrize("meta, match", [
    ("[1, 2]", "holds a list, not an object"),
    ("{}", 'has no "labels" key'),
    ('{"labels": [1, 2]}', r"labels\[0\] = 1 is not an \[image, class\] pair"),
    ('{"labels": "abc"}', '"labels" is a string, not a list'),
    ('{"labels": {"00000/img00000000.png": 1}}', '"labels" is an object, not a list'),
    ('{"labels": [["00000/img00000000.png"]]}', r"labels\[0\] = \[\"00000/img00000000.png\"\] is not an \[image"),
    (_entries(0, '"x"', 1), r'labels\[1\] = \["00000/img00000001.png", "x"\] has class "x", not a whole number'),
    (_entries(0, 1, -2), "has class -2, not a whole number from 0 to 999999"),
    (_entries(0, 1.5, 1), "has class 1.5, not a whole number"),
    (_entries(0, "true", 1), "has class true, not a whole number"),
    (_entries(0, 1, 10**6), "has class 1000000, not a whole number"),
    (_entries(0, 1, "[0.2, 0.8]"), r"labels\[2\] .* has a label of another form than labels\[0\]"),
    (_entries(0, 1, 2, names=["00000/img00000000.png", "00000/img00000001.png", "00000/img00000009.png"]),
     "names 00000/img00000009.png, which is not one of the dataset's images"),
    (_entries(0, 1, 2, names=["00000/img00000000.png", "00000/img00000001.png", "00000/img00000001.png"]),
     "labels 00000/img00000001.png a second time"),
    (_entries(0, 1), "image 00000/img00000002.png has no label"),
])
def test_malformed_dataset_json_names_the_zip_the_entry_and_the_form(tmp_path, meta, match):
    path = _zip_with_json(tmp_path / "d.zip", meta)
    with pytest.raises(DatasetError, match=r"d\.zip:dataset\.json: .*" + match + r'.*\{"labels": null\}') as info:
        load_dataset(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("meta, labels", [
    ('{"labels": null}', None),
    (_entries(0, "2.0", 1), [0, 2, 1]),
    (_entries("[0.1, 0.9]", "[0.7, 0.3]", "[0.0, 1.0]"), [1, 0, 1]),  # EDM's soft labels: the largest entry
])
def test_well_formed_dataset_json_labels(tmp_path, meta, labels):
    ds = load_dataset(_zip_with_json(tmp_path / "d.zip", meta))
    assert (None if ds.labels is None else ds.labels.tolist()) == labels


def test_a_folder_dataset_json_is_checked_like_a_zips(tmp_path):
    for i, img in enumerate(_images(2)):
        _save_png(tmp_path / f"{i}.png", img)
    (tmp_path / "dataset.json").write_text('{"labels": [["0.png", 0]]}')
    with pytest.raises(DatasetError, match="image 1.png has no label"):
        load_dataset(tmp_path)


@pytest.mark.parametrize("labels, match", [
    (np.array([0, -1, 2]), "classes from -1 to 2"),
    (np.array([0, 1]), r"labels of shape \(2,\); save one integer class per image, shape \(3,\)"),
    (np.array([0.0, 1.5, 2.0]), "float64 labels"),
])
def test_bad_array_labels_are_refused(tmp_path, labels, match):
    np.savez(tmp_path / "d.npz", images=_images(3), labels=labels)
    with pytest.raises(DatasetError, match=match):
        load_dataset(tmp_path / "d.npz")


@pytest.mark.parametrize("command", ["info", "sample"])
def test_bad_labels_and_seeds_are_one_error_line_on_the_command_line(capsys, tmp_path, command):
    from helpers import assert_one_line_error, pspc

    bad_zip = _zip_with_json(tmp_path / "d.zip", _entries(0, 1, -2))
    for data, fragment in [(bad_zip, "has class -2"), ("builtin:shapes:10:-1", "has seed -1")]:
        args = ["dataset", "info", data] if command == "info" else ["sample", "--data", data, "-o", tmp_path / "o"]
        assert_one_line_error(*pspc(capsys, *args)[::2], fragment)
        assert not (tmp_path / "o").exists()
