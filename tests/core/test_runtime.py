"""The runtime every command shares: resumable batch jobs, the output-folder lock, fingerprints, atomic files."""

import os
import threading

import numpy as np
import pytest

from pspc_core.errors import PspcWarning, RunError
from pspc_core.runtime.atomic import atomic_path, ensure_space, save_npy
from pspc_core.runtime.batches import BatchJob, run_in_batches
from pspc_core.runtime.fingerprint import dataset_fingerprint, file_fingerprint
from pspc_core.runtime.lock import output_lock


def test_interrupted_run_keeps_finished_batches_and_resumes(tmp_path):
    calls, interrupted = [], []

    def compute(start, stop):
        if start == 4 and not interrupted:
            interrupted.append(True)
            raise KeyboardInterrupt
        calls.append(start)
        return np.full((stop - start, 1), start)

    job = BatchJob(tmp_path, {"k": 1}, n=10, batch=2)
    with pytest.raises(KeyboardInterrupt):
        job.run(compute)
    assert job.done() == [(0, 2), (2, 4)]
    job.run(compute)
    assert calls == [0, 2, 4, 6, 8]
    assert job.gather()[:, 0].tolist() == [0, 0, 2, 2, 4, 4, 6, 6, 8, 8]
    other = BatchJob(tmp_path, {"k": 2}, n=10, batch=2)
    assert other.done() == []


def test_a_changed_key_sets_old_batches_aside_naming_what_changed(tmp_path):
    BatchJob(tmp_path, {"data": "a", "seed": 0}, n=4, batch=2).run(lambda s, e: np.zeros((e - s, 1)))
    job = BatchJob(tmp_path, {"data": "b", "seed": 0}, n=4, batch=2)
    with pytest.warns(PspcWarning, match=r"setting aside 2 finished batches .* whose data differ"):
        job.run(lambda s, e: np.ones((e - s, 1)))
    assert job.gather()[:, 0].tolist() == [1, 1, 1, 1]


def test_a_damaged_batch_file_is_recomputed_with_a_warning(tmp_path):
    job = BatchJob(tmp_path, {"k": 1}, n=4, batch=2)
    job.run(lambda s, e: np.full((e - s, 1), s))
    job.path((2, 4)).write_bytes(b"\x93NUMPY garbage")
    calls = []
    with pytest.warns(PspcWarning, match="damaged; recomputing"):
        job.run(lambda s, e: calls.append(s) or np.full((e - s, 1), s))
    assert calls == [2] and job.gather()[:, 0].tolist() == [0, 0, 2, 2]


def test_run_in_batches_writes_the_file_and_leaves_no_work_behind(tmp_path):
    out = run_in_batches(tmp_path, "x", {"k": 1}, 5, 2, lambda s, e: np.arange(s, e)[:, None], progress=False)
    assert np.load(tmp_path / "x.npy")[:, 0].tolist() == list(range(5)) == out[:, 0].tolist()
    assert not (tmp_path / ".pspc-work").exists()


def test_a_second_run_into_a_locked_folder_stops_with_one_line(tmp_path):
    with output_lock(tmp_path):
        with pytest.raises(RunError, match=f"another pspc run .process {os.getpid()}. is writing to"):
            with output_lock(tmp_path):
                pass
        result = []
        t = threading.Thread(target=lambda: result.append(_try_lock(tmp_path)))
        t.start()
        t.join()
        assert result == ["busy"]
    with output_lock(tmp_path):  # released: taken again
        pass
    assert not (tmp_path / ".pspc-work").exists()


def test_folders_the_lock_made_go_again_unless_the_run_wrote_into_them(tmp_path):
    with pytest.raises(RunError):
        with output_lock(tmp_path / "a" / "b"):
            raise RunError("bad input")
    assert not (tmp_path / "a").exists()
    with output_lock(tmp_path / "a" / "b"):
        (tmp_path / "a" / "b" / "out.npy").write_bytes(b"x")
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == ["out.npy"]


def _try_lock(folder):
    try:
        with output_lock(folder):
            return "took it"
    except RunError:
        return "busy"


def test_file_fingerprints_follow_content_not_path(tmp_path):
    f = tmp_path / "a.bin"
    f.write_bytes(b"one")
    first = file_fingerprint(f)
    st = f.stat()
    f.write_bytes(b"two")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime: the hash still tells them apart
    assert file_fingerprint(f)["blake2b"] != first["blake2b"]


def test_dataset_fingerprints_see_the_images(tiny_dataset):
    from pspc_core import Dataset

    other = Dataset(tiny_dataset.images.clone())
    assert dataset_fingerprint(tiny_dataset)["blake2b"] == dataset_fingerprint(other)["blake2b"]
    changed = Dataset(tiny_dataset.images.clone())
    changed.images[0, 0, 0, 0] ^= 1
    assert dataset_fingerprint(changed)["blake2b"] != dataset_fingerprint(tiny_dataset)["blake2b"]


def test_atomic_files_get_plain_permissions_and_vanish_on_error(tmp_path):
    with atomic_path(tmp_path / "f.txt") as tmp:
        tmp.write_text("x")
        os.chmod(tmp, 0o600)
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o666 & ~mask
    with pytest.raises(ValueError):
        with atomic_path(tmp_path / "g.txt") as tmp:
            tmp.write_text("half")
            raise ValueError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_too_little_disk_is_refused_before_work(tmp_path):
    with pytest.raises(RunError, match="need about 1e\\+03 TB"):
        ensure_space(tmp_path / "new" / "folder", 10**15, "1 sample")
    save_npy(tmp_path / "ok.npy", np.zeros(3))


def test_an_interrupt_while_a_kernel_compiles_is_held_until_the_call_returns():
    import signal

    from pspc_core.runtime.compiling import first_call

    done = []

    def compiling_kernel(x):  # numba's compiler would swallow a KeyboardInterrupt raised in here
        signal.raise_signal(signal.SIGINT)
        done.append(x)
        return x

    ready: set = set()
    with pytest.raises(KeyboardInterrupt):
        first_call(compiling_kernel, (1,), "a test kernel", ready)
    assert done == [1] and compiling_kernel in ready
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
