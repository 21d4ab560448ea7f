"""docker/Dockerfile pins what the local install pins (no docker engine needed: the files are read)."""

import importlib.metadata
import os
import re
import subprocess

import pytest

from conftest import MPI_AVAILABLE, require


@pytest.fixture(scope="module")
def dockerfile(repo_root):
    return (repo_root / "docker" / "Dockerfile").read_text()


@pytest.fixture(scope="module")
def args(dockerfile):
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", dockerfile, re.M))


@pytest.fixture(scope="module")
def requirements(repo_root):
    lines = (repo_root / "requirements.txt").read_text().splitlines()
    return dict(line.split("==") for line in lines if line and not line.startswith("#"))


def tensorflow_cuda_pins(version):
    """TensorFlow's `and-cuda` extra: {wheel: version} of the installed TensorFlow."""
    try:
        installed, requires = importlib.metadata.version("tensorflow"), importlib.metadata.requires("tensorflow")
    except importlib.metadata.PackageNotFoundError:
        pytest.fail("TensorFlow is not installed in this environment")
    assert installed == version
    pins = [re.match(r"([\w-]+)\s*==\s*([\d.]+)\s*;\s*extra\s*==\s*['\"]and-cuda['\"]", r) for r in requires]
    return {m.group(1): m.group(2) for m in pins if m}


def test_python_packages_match_requirements(args, requirements, repo_root):
    assert args["TENSORFLOW_VERSION"] == requirements["tensorflow"]
    assert args["TF_KERAS_VERSION"] == requirements["tf-keras"]
    setup = (repo_root / "setup_env.sh").read_text()
    assert args["HOROVOD_VERSION"] == re.search(r"^HOROVOD_VERSION=(\S+)$", setup, re.M).group(1)
    pyproject = (repo_root / "pyproject.toml").read_text()
    assert f'requires-python = "=={args["PYTHON_VERSION"]}.*"' in pyproject


def test_image_installs_with_setup_env_only(dockerfile):
    """Every Python package comes from ./setup_env.sh --gpu and the files it reads; the build then
    asserts the installed versions equal the ARGs above."""
    assert re.search(r"^COPY requirements\.txt requirements-test\.txt setup_env\.sh \./$", dockerfile, re.M)
    assert "./setup_env.sh --gpu" in dockerfile
    assert "pip install" not in dockerfile and "pip3 install" not in dockerfile
    for name in ("TENSORFLOW_VERSION", "TF_KERAS_VERSION", "HOROVOD_VERSION"):
        assert "${" + name + "}" in dockerfile.split("./setup_env.sh --gpu", 1)[1]
    assert re.search(r"^ENV SETUP_FLAGS=--gpu\b", dockerfile, re.M)
    assert dockerfile.rstrip().endswith('CMD ["./run_and_time.sh"]')


def test_gpu_setup_swaps_in_the_same_tensorflow(repo_root, args):
    """setup_env.sh --gpu's substitution turns the CPU pin into tensorflow[and-cuda] of the same version."""
    setup = (repo_root / "setup_env.sh").read_text()
    expression = re.search(r"sed -E '([^']+)' \"\$ROOT/requirements.txt\"", setup).group(1)
    out = subprocess.run(["sed", "-E", expression, str(repo_root / "requirements.txt")], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    assert f"tensorflow[and-cuda]=={args['TENSORFLOW_VERSION']}" in out.splitlines()
    assert not any(line.startswith("tensorflow-cpu") for line in out.splitlines())


def test_cuda_and_nccl_match_tensorflow(dockerfile, args):
    cuda = tensorflow_cuda_pins(args["TENSORFLOW_VERSION"])
    assert args["NCCL_VERSION"] == cuda["nvidia-nccl-cu12"]
    # The base image's CUDA major.minor is the one TensorFlow's CUDA runtime wheel pins (12.5).
    assert args["CUDA_VERSION"].split(".")[:2] == cuda["nvidia-cuda-runtime-cu12"].split(".")[:2]
    assert re.search(r"^FROM nvidia/cuda:\$\{CUDA_VERSION\}-cudnn-devel-ubuntu22\.04$", dockerfile, re.M)
    assert cuda["nvidia-cudnn-cu12"].split(".")[0] == "9"  # the base's cudnn tag is cuDNN 9 for CUDA 12.5
    assert "libnccl-dev=${NCCL_VERSION}" in dockerfile


def test_openmpi_matches_the_local_one(args):
    require(MPI_AVAILABLE, "no local OpenMPI (setup_env.sh installs it when run as root)")
    version = subprocess.run(["mpirun", "--version"], stdout=subprocess.PIPE, text=True, check=True).stdout
    assert re.search(r"\(Open MPI\) (\S+)", version).group(1) == args["OPENMPI_VERSION"]


def test_build_context_leaves_out_local_state(repo_root):
    ignored = (repo_root / "docker" / "Dockerfile.dockerignore").read_text().split()
    for path in (".venv", "data", "runs", ".git"):
        assert path in ignored


def test_build_version_assertion_holds_locally(repo_root, dockerfile, args):
    """The image's post-install assertion, run as the shell would run it, accepts the local install."""
    joined = dockerfile.replace("\\\n", "")  # Docker's line continuation
    line = next(line for line in joined.splitlines() if "importlib.metadata" in line)
    command = line[line.index(".venv/bin/python"):]
    env = dict(os.environ, **args)
    proc = subprocess.run(["sh", "-c", command], cwd=repo_root, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout
    wrong = dict(env, HOROVOD_VERSION="0.0.0")
    assert subprocess.run(["sh", "-c", command], cwd=repo_root, env=wrong, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=120).returncode != 0
