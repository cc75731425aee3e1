#!/usr/bin/env python3
"""Runs the workspace's test binaries, a few at once, as `cargo test` would run them one by one.

Reads the JSON messages of `cargo test --no-run --message-format=json` on stdin. Each test
binary runs in its package's directory (as cargo runs it), with its output kept and printed whole
when it ends, so the logs of binaries running side by side do not interleave. Most of the suite's
time is spent waiting on emulators and fakes, not on the CPU, so two at once on two cores
shortens the run; each binary starts its own emulators on free ports, so they do not share state.

Usage: cargo test ... --no-run --message-format=json | run-test-binaries.py [--jobs N] [-- args]
Exit status: 0 when every binary passed, 1 otherwise (every binary runs; the failed ones are
listed at the end).
"""

import json
import os
import subprocess
import sys
import threading
import time

# Binaries known to take the longest start first, so the pool does not end on one long tail.
SLOW_FIRST = [
    "azure_fake_arm",
    "data_path",
    "moto_faults",
    "pipeline",
    "moto_fake_arm_aws_hot_to_azure_cold",
    "fake_arm_local_azure_events",
    "fake_arm_local_azure",
    "crash_recovery",
    "moto_certificates",
    "aws_kill",
    "install_moto",
    "dead_letters_moto",
]


def main() -> int:
    args = sys.argv[1:]
    jobs = int(os.environ.get("TEST_JOBS", "2"))
    if args[:1] == ["--jobs"]:
        jobs = int(args[1])
        args = args[2:]
    if args[:1] == ["--"]:
        args = args[1:]

    binaries = []
    for line in sys.stdin:
        line = line.strip()
        if not line.startswith("{"):
            continue
        msg = json.loads(line)
        if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
            continue
        if not msg.get("profile", {}).get("test"):
            continue
        target = msg["target"]
        manifest = msg["manifest_path"]
        binaries.append(
            {
                "name": f"{package_name(msg['package_id'])} {target['kind'][0]} {target['name']}",
                "short": target["name"],
                "exe": msg["executable"],
                "cwd": os.path.dirname(manifest),
            }
        )
    if not binaries:
        print("run-test-binaries: no test binaries in cargo's output", file=sys.stderr)
        return 1

    def rank(b):
        return SLOW_FIRST.index(b["short"]) if b["short"] in SLOW_FIRST else len(SLOW_FIRST)

    queue = sorted(binaries, key=rank)
    lock = threading.Lock()
    failed = []
    started = time.monotonic()

    def worker():
        while True:
            with lock:
                if not queue:
                    return
                b = queue.pop(0)
            t0 = time.monotonic()
            proc = subprocess.run(
                [b["exe"], *args],
                cwd=b["cwd"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            took = time.monotonic() - t0
            with lock:
                sys.stdout.write(f"     Running {b['name']} ({b['exe']})\n")
                sys.stdout.write(proc.stdout.decode("utf-8", "replace"))
                sys.stdout.write(
                    f"run-test-binaries: {b['name']} {'ok' if proc.returncode == 0 else 'FAILED'}"
                    f" in {took:.1f}s (at {time.monotonic() - started:.0f}s)\n\n"
                )
                sys.stdout.flush()
                if proc.returncode != 0:
                    failed.append(b["name"])

    threads = [threading.Thread(target=worker) for _ in range(max(1, jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failed:
        print(f"run-test-binaries: {len(failed)} test binaries failed:", file=sys.stderr)
        for name in failed:
            print(f"  {name}", file=sys.stderr)
        return 1
    print(f"run-test-binaries: {len(binaries)} test binaries passed", file=sys.stderr)
    return 0


def package_name(package_id: str) -> str:
    """The package's name from its id: `path+file:///…/deployer#0.1.0` (the name is the last
    path segment) or `path+file:///…/dir#name@0.1.0`; older cargo: `name 0.1.0 (path+…)`."""
    if "#" not in package_id:
        return package_id.split(" ", 1)[0]
    path, fragment = package_id.split("#", 1)
    if "@" in fragment:
        return fragment.split("@", 1)[0]
    return path.rstrip("/").rsplit("/", 1)[-1]


if __name__ == "__main__":
    sys.exit(main())
