"""A plugin built as its own distribution is discovered through its entry point, like any third-party one."""

import os
import subprocess
import sys
import textwrap

import pytest

PYPROJECT = """
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "pspc-blur"
version = "0.3.0"

[project.entry-points.pspc]
blur = "pspc_blur.hooks"
"""

HOOKS = '''
from pspc_core import Param, hookimpl


@hookimpl
def register_denoisers(register):
    register("blur", summary="box blur of z", params=[Param("width", "int", 3, "box width")],
             factory="pspc_blur.blur:Blur")


@hookimpl
def register_commands(app):
    from pspc_cli.options import run_options

    @app.command("blur-info")
    @run_options("data")
    def blur_info(opts, width: int = 3):
        """Say how a box blur of WIDTH sees the run's data."""
        if width < 1:
            from pspc_core.errors import ParameterError

            raise ParameterError(f"--width must be at least 1, got {width}")
        data = opts.load_data()
        print(f"blur {width} over {len(data)} images of {data.resolution}x{data.resolution}")
'''

BLUR = '''
import torch
from pspc_core.denoiser import Denoiser


class Blur(Denoiser):
    def __init__(self, width):
        self.width = width

    def denoise(self, z, t):
        c = z.shape[1]
        kernel = torch.ones(c, 1, self.width, self.width) / self.width**2
        return torch.nn.functional.conv2d(z, kernel, padding=self.width // 2, groups=c)
'''


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    src = tmp_path_factory.mktemp("pspc-blur")
    (src / "pyproject.toml").write_text(PYPROJECT)
    (src / "pspc_blur").mkdir()
    (src / "pspc_blur" / "__init__.py").write_text("")
    (src / "pspc_blur" / "hooks.py").write_text(HOOKS)
    (src / "pspc_blur" / "blur.py").write_text(BLUR)
    site = src / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "--target", str(site), str(src)], check=True, capture_output=True)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}


def test_installed_plugin_is_listed_with_its_distribution(installed):
    out = subprocess.run([sys.executable, "-m", "pspc_cli", "list"], env=installed, capture_output=True, text=True)
    assert "blur" in out.stdout and "box blur of z" in out.stdout
    out = subprocess.run([sys.executable, "-m", "pspc_cli", "plugins"], env=installed, capture_output=True, text=True)
    assert "pspc-blur 0.3.0" in out.stdout


def test_installed_plugin_creates_and_denoises(installed):
    code = textwrap.dedent("""
        import torch, pspc_core
        den = pspc_core.create_denoiser("blur", width="3")
        print(tuple(den(torch.ones(1, 3, 8, 8), 1.0).shape))
    """)
    out = subprocess.run([sys.executable, "-c", code], env=installed, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "(1, 3, 8, 8)"


def test_pspc_plugins_env_can_exclude_it(installed):
    env = {**installed, "PSPC_PLUGINS": "empirical"}
    out = subprocess.run([sys.executable, "-m", "pspc_cli", "list"], env=env, capture_output=True, text=True)
    assert "blur" not in out.stdout and "empirical" in out.stdout


def test_installed_plugin_adds_a_command_that_runs_through_pspc(installed):
    run = [sys.executable, "-m", "pspc_cli"]
    out = subprocess.run([*run, "blur-info", "--data", "builtin:shapes:12", "--no-xflip", "--width", "5"],
                         env=installed, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "blur 5 over 12 images of 32x32", out.stderr
    out = subprocess.run([*run, "--help"], env=installed, capture_output=True, text=True)
    assert "blur-info" in out.stdout
    out = subprocess.run([*run, "blur-info", "--width", "0"], env=installed, capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.strip() == "error: --width must be at least 1, got 0"
    out = subprocess.run([*run, "plugins"], env=installed, capture_output=True, text=True)
    assert "hooks: register_commands, register_denoisers" in out.stdout


def test_the_readme_plugin_example_runs_on_the_default_data(installed, tmp_path):
    out = subprocess.run([sys.executable, "-m", "pspc_cli", "sample", "-d", "blur", "-p", "width=5", "--n-samples", "2",
                          "--n-steps", "3", "-q", "-o", str(tmp_path)], env=installed, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "blur_samples.npy").exists()
