"""The local target's watchdog: the router and the model servers back within
a second of dying, without waiting for Odoo's supervisor cron.

    python watchdog.py --target DIR --router-port P [--router-host H]

One per target folder (a lock file says which runs; a second one exits at
once). Every ``--interval`` seconds:

- a model server whose state file is there but whose process is gone (a
  crash, a kill, the OOM killer) is started again with the same command
  line and port, so the router's backend stays right; Odoo stops a server by
  removing its state file first, so a stopped server is never revived;
- the router, when its files are there and its master is gone, is started
  again from them (the last configuration Odoo made, tested then).

A server that fails to start again is left to the supervisor cron (its
backoff and the deployment's chatter are Odoo's). The watchdog exits when
the target's folder goes. It imports neither Odoo nor the addon: Odoo runs
it by path, and it loads the two adapters it uses by theirs.
"""

import argparse
import contextlib
import fcntl
import importlib.util
import logging
import sys
import time
import types
from pathlib import Path

ADAPTERS = Path(__file__).resolve().parent.parent / "adapters"
_logger = logging.getLogger("mlops.watchdog")


def _adapters():
    """``processes`` and ``router`` of ``../adapters``, without the addon's
    package (which is Odoo's)."""
    package = types.ModuleType("mlops_watchdog_adapters")
    package.__path__ = [str(ADAPTERS)]
    sys.modules[package.__name__] = package
    loaded = {}
    for name in ("processes", "router"):
        full = f"{package.__name__}.{name}"
        spec = importlib.util.spec_from_file_location(full, ADAPTERS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[full] = module
        spec.loader.exec_module(module)
        loaded[name] = module
    return loaded["processes"], loaded["router"]


def lock_path(target_dir):
    return Path(target_dir) / "watchdog.lock"


def revive_servers(runtime):
    """Start again the servers whose state file outlived their process."""
    revived = []
    for state in sorted(runtime.root.glob("*.json")) if runtime.root.exists() else ():
        key = state.stem
        if runtime.find(key):
            continue
        try:
            if runtime.revive(key):
                revived.append(key)
        except Exception as error:  # noqa: BLE001 - the cron takes over
            _logger.warning("%s did not start again: %s", key, error)
            continue
        with contextlib.suppress(OSError), open(runtime.log_path(key), "ab") as log:
            log.write(b"--- its process had gone: the watchdog started it again\n")
    return revived


def run(target_dir, router_port, router_host=None, interval=0.5, rounds=None):
    runtime_module, router_module = _adapters()
    target_dir = Path(target_dir)
    runtime = runtime_module.LocalRuntime(target_dir / "runtime")
    router = router_module.HAProxyRouter(
        target_dir / "router", router_port, host=router_host
    )
    done = 0
    while target_dir.is_dir() and (rounds is None or done < rounds):
        for key in revive_servers(runtime):
            _logger.info("%s started again", key)
        try:
            if router.revive():
                _logger.info("the router started again from its files")
        except router_module.RouterError as error:
            _logger.warning("the router did not start again: %s", error)
        done += 1
        time.sleep(interval)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="the local target's folder")
    parser.add_argument("--router-port", type=int, required=True)
    parser.add_argument("--router-host")
    parser.add_argument("--interval", type=float, default=0.5)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with open(lock_path(args.target), "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return 0  # another watchdog watches this target
        run(args.target, args.router_port, args.router_host, args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
