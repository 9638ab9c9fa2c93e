"""Check an rtclient installed from the built wheel or sdist, in a venv of its own.

Run by ``.ci/run`` with that venv's Python, outside the source tree:
``python check_install.py wheel|sdist``.  The packages must import from the venv's
site-packages (typed), the pytest plugin's entry point must name a module there, the
metadata must list this Python among its classifiers, the console script must run, and
the quickstart example (a FakeServer, two Clients and a server restart) must exit 0.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys
import sysconfig
from pathlib import Path

QUICKSTART = Path(__file__).resolve().parent.parent / "examples" / "quickstart.py"


def check(condition: object, message: object) -> None:
    """An ``assert`` that ``python -O`` (or PYTHONOPTIMIZE in the environment) keeps."""
    if not condition:
        raise SystemExit(f"check_install: {message}")


def run(*command: str, timeout: float) -> None:
    """Run ``command``; on failure exit with its output (which is captured otherwise)."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    output = (done.stdout + done.stderr).strip()[-2000:]
    check(done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{output}")


def main(label: str) -> int:
    import fake_server
    import rtclient

    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    for module in (rtclient, fake_server):
        path = Path(module.__file__ or "").resolve()
        check(site in path.parents, f"{module.__name__} imported from {path}, not {site}")
        check((path.parent / "py.typed").is_file(), f"{module.__name__} has no py.typed")
    meta = importlib.metadata.metadata("rtclient")
    check(meta["Version"] == rtclient.__version__, (meta["Version"], rtclient.__version__))
    (plugin,) = importlib.metadata.entry_points(group="pytest11", name="rtclient.testing.plugin")
    check(importlib.util.find_spec(plugin.module) is not None, plugin)  # loads under pytest
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    classifier = f"Programming Language :: Python :: {version}"
    check(classifier in meta.get_all("Classifier", []), f"no classifier {classifier!r}")
    script = Path(sys.executable).parent / "rtclient"
    run(str(script), "--version", timeout=60)
    run(sys.executable, str(QUICKSTART), timeout=120)
    print(f"rtclient {rtclient.__version__} from the {label} on Python {version}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
