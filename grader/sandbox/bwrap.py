"""The bubblewrap command line for one run: what the sandbox sees (system files, Python, the run's own binds).

Everything is read-only except a private, size-capped /tmp. Visible: /usr (and the /lib*, /bin links), the
dynamic-loader configuration from /etc, the Python installation and virtual environment running the grader,
the run's binds, a fresh /proc for its own PID namespace and a minimal /dev (plus the NVIDIA devices on GPU
runs). Not visible: the rest of /etc, /home, /root, /var, the grader's data folder and database, other uploads,
the parent's environment. Namespaces: all of them (network included), a new session, no further user
namespaces where bubblewrap supports `--disable-userns`.
"""

from __future__ import annotations

import functools
import glob
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from grader.sandbox.limits import SandboxLimits

SANDBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TOP_LEVEL_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives")
"""The loader's cache lets libraries from /usr resolve; alternatives hold /usr/bin links on Debian."""
NVIDIA_DEVICES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset")
GPU_ENV = ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")


@dataclass(frozen=True, slots=True)
class Bind:
    """A host path shown read-only inside the sandbox at `target`."""

    source: Path
    target: str


@dataclass(frozen=True, slots=True)
class Bubblewrap:
    """The installed bwrap and the options its version supports."""

    path: str
    version: str
    tmpfs_size: bool
    disable_userns: bool


@functools.cache
def find_bubblewrap() -> Bubblewrap | None:
    """The bwrap executable on PATH (or in /usr/bin), with its features; None when not installed."""
    path = shutil.which("bwrap") or next(
        (p for p in ("/usr/bin/bwrap", "/usr/local/bin/bwrap") if os.access(p, os.X_OK)), None
    )
    if path is None:
        return None
    try:
        help_text = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=10).stdout
        version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return Bubblewrap(path, version, "--size" in help_text, "--disable-userns" in help_text)


def python_roots() -> list[Path]:
    """Folders the interpreter needs: the installation and the virtual environment (outside /usr)."""
    paths = {Path(os.path.realpath(p)) for p in (sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix)}
    outside_usr = {p for p in paths if not _within(p, Path("/usr"))}
    # A folder inside another listed one is covered by that one's bind.
    return sorted(p for p in outside_usr if not any(other != p and _within(p, other) for other in outside_usr))


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def python_binds() -> list[Bind]:
    """The Python folders at the same paths inside (a venv's pyvenv.cfg names its base by absolute path)."""
    binds = [Bind(root, str(root)) for root in python_roots()]
    # sys.prefix may be reached through a link (e.g. /opt/venv -> /srv/venv); show it under that name too.
    for name in {sys.prefix, sys.base_prefix}:
        if os.path.realpath(name) != name and not name.startswith("/usr"):
            binds.append(Bind(Path(os.path.realpath(name)), name))
    return binds


def reachable_by_others(path: Path) -> bool:
    """Whether a user with no relation to the owner can reach `path` (bubblewrap resolves binds as that user)."""
    try:
        real = Path(os.path.realpath(path))
        for folder in real.parents:
            if not os.stat(folder).st_mode & stat.S_IXOTH:
                return False
        mode = os.stat(real).st_mode
    except OSError:
        return False
    needed = stat.S_IROTH | stat.S_IXOTH if stat.S_ISDIR(mode) else stat.S_IROTH
    return mode & needed == needed


def command_line(
    bwrap: Bubblewrap,
    command: Sequence[str],
    *,
    binds: Sequence[Bind],
    sources: Mapping[Path, Path],
    limits: SandboxLimits,
    env: Mapping[str, str],
    gpu: bool,
    chdir: str = "/tmp",
    nested_userns: bool = False,
) -> list[str]:
    """bwrap's arguments; `sources` replaces a bind's source with where it was staged (see runner). With
    `nested_userns` the program may make user namespaces of its own: only for the warm sandbox's server, whose
    children isolate themselves that way (and forbid any further one: grader/sandbox/warm.py)."""
    args = [bwrap.path, "--unshare-all", "--unshare-user", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    if bwrap.disable_userns and not nested_userns:
        args += ["--disable-userns"]
    args += ["--hostname", "sandbox", "--ro-bind", "/usr", "/usr"]
    args += _top_level_links() + _etc_binds()
    # The private /tmp comes before the binds: a Python install or checkout that lives under the host's /tmp
    # (a CI clone, say) is then bound on top of it instead of being hidden by it.
    args += (["--size", str(limits.tmp_bytes)] if bwrap.tmpfs_size else []) + ["--tmpfs", "/tmp"]
    for bind in binds:
        args += ["--ro-bind", str(sources.get(bind.source, bind.source)), bind.target]
    args += ["--proc", "/proc", "--dev", "/dev"]
    args += _gpu_binds() if gpu else []
    args += ["--remount-ro", "/dev"]
    # The root is bwrap's own tmpfs holding the mount points: read-only once everything is in place.
    args += ["--remount-ro", "/", "--chdir", chdir, "--clearenv"]
    for key, value in sorted(env.items()):
        args += ["--setenv", key, value]
    return [*args, "--", *command]


MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=268435456"
"""glibc's malloc in a run: blocks up to 32 MiB from the heap, which keeps up to 256 MiB it no longer uses. With the
defaults a fresh process hands a network's activations (8 MiB a batch for a ResNet on CIFAR) back to the kernel after
every batch and faults them in again for the next: a sandboxed evaluation ran 1.3-1.5x slower than the same code in a
long-lived process, whose earlier large frees had raised glibc's limits (bench/bench_evaluation.py shows both)."""


def sandbox_env(limits: SandboxLimits, *, gpu: bool, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The only environment the sandboxed program gets: no secrets, no settings of the grader."""
    threads = str(limits.threads)
    env = {
        "PATH": SANDBOX_PATH,
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "USER": "sandbox",
        "LOGNAME": "sandbox",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "PYTHONIOENCODING": "utf-8",
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "OPENBLAS_NUM_THREADS": threads,
        "NUMEXPR_NUM_THREADS": threads,
        "GLIBC_TUNABLES": MALLOC_TUNABLES,
    }
    if gpu:
        env.update({key: os.environ[key] for key in GPU_ENV if key in os.environ})
        env["CUDA_MODULE_LOADING"] = "LAZY"
    return env | dict(extra or {})


def _top_level_links() -> list[str]:
    """/bin, /lib64... as the links they are on merged-/usr systems, or read-only binds of the real folders."""
    args: list[str] = []
    for path in TOP_LEVEL_LINKS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


def _etc_binds() -> list[str]:
    args: list[str] = []
    for path in ETC_FILES:
        args += ["--ro-bind-try", path, path]
    return args


def _gpu_binds() -> list[str]:
    """The NVIDIA device nodes, and /sys read-only for the driver's PCI lookups (untested here: no GPU)."""
    devices = [d for d in NVIDIA_DEVICES if os.path.exists(d)]
    devices += sorted(d for d in glob.glob("/dev/nvidia*") if re.fullmatch(r"/dev/nvidia\d+", d))
    args: list[str] = []
    for device in devices:
        args += ["--dev-bind", device, device]
    return [*args, "--ro-bind-try", "/sys", "/sys"]
