"""``retrieval app``: open the Streamlit app on a run directory written by ``retrieval tune``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cli.common import UsageError

DESCRIPTION = """Serve the search-and-compare app for a run directory (written by `retrieval tune --out DIR`):
base vs tuned results side by side for any query, recall@k curves, the metrics table with
significance tests and the per-query wins and losses. Runs `streamlit run` headless and prints
the address to open; stop it with Ctrl-C."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("app", help="browse a tuned run: search base vs tuned, metrics, curves", description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="DIR", help="run directory written by `retrieval tune --out DIR`")
    p.add_argument("--port", type=int, default=8501, help="port to serve on (default: 8501)")
    p.add_argument("--address", default="127.0.0.1",
                   help="interface to listen on (default: 127.0.0.1, this machine only; 0.0.0.0 for every interface)")
    p.set_defaults(func=run)


def app_script() -> Path:
    """The installed ``app/main.py``, found without importing ``app`` (``find_spec`` of a top-level package runs nothing)."""
    import importlib.util

    spec = importlib.util.find_spec("app")
    return Path(next(iter(spec.submodule_search_locations))).resolve() / "main.py"


def command(run_dir: str | Path, port: int = 8501, address: str = "127.0.0.1") -> list[str]:
    return [
        sys.executable, "-m", "streamlit", "run", str(app_script()),
        "--server.headless", "true", "--server.port", str(port), "--server.address", address,
        "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal",
        "--", str(Path(run_dir).expanduser().resolve()),
    ]


def run(args: argparse.Namespace) -> int:
    if not app_script().exists():
        raise UsageError(f"{app_script()}: the app is not installed with this copy of retrieval")
    if not 0 < args.port < 65536:
        raise UsageError(f"--port {args.port}: not a port number")
    if not Path(args.run_dir).is_dir():  # the app explains this too, but say it before starting a server
        raise UsageError(f"{args.run_dir}: no run directory here; create one with `retrieval tune --data DATA --out {args.run_dir}`")
    print(f"serving {args.run_dir} at http://{args.address}:{args.port}  (Ctrl-C stops)", flush=True)
    cmd = command(args.run_dir, args.port, args.address)
    os.execv(cmd[0], cmd)  # become the server: signals (Ctrl-C, a supervisor's SIGTERM) reach Streamlit itself
