"""tests/scale/scale.py - what the scale-out tests share: free ports, waiting,
failures, a tidepool instance and a tidepool-stress run. Standard library only."""
import json
import os
import signal
import socket
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, cond, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise Failure(f"timed out after {timeout} s waiting until {what}")


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


class Instance:
    """One tidepool with a conf written to tmp: `head` (global directives),
    then one listen block per (port, body) of `listeners`. The ports stay
    fixed, so a restart comes back where its clients look for it."""

    def __init__(self, name, binary, tmp, listeners, head="workers 1;\nshutdown_timeout 5s;\n"):
        self.name, self.binary, self.tmp = name, binary, tmp
        self.ports = [port for port, _ in listeners]
        self.conf = os.path.join(tmp, f"{name}.conf")
        with open(self.conf, "w") as f:
            f.write(head + "".join(f"listen 127.0.0.1:{port} {{ {body} }}\n"
                                   for port, body in listeners))
        self.proc = None
        self.lives = 0

    def log_path(self):
        return os.path.join(self.tmp, f"{self.name}.{self.lives}.log")

    def log(self):
        with open(self.log_path(), errors="replace") as f:
            return f.read()

    def start(self):
        self.lives += 1
        self.proc = subprocess.Popen([self.binary, "-c", self.conf],
                                     stdout=subprocess.DEVNULL,
                                     stderr=open(self.log_path(), "w"))
        want = [f"listening on 127.0.0.1:{port} " for port in self.ports]
        wait_until(f"{self.name} listens",
                   lambda: self.proc.poll() is None and all(w in self.log() for w in want)
                   or self.proc.poll() is not None, 10)
        check(self.proc.poll() is None, f"{self.name} did not start: {self.log()}")

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=10):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise Failure(f"{self.name} did not exit within {timeout} s: {self.log()}")

    def stats(self, key):
        """A figure of the stats line it logged at its last stop, or None."""
        for line in self.log().splitlines():
            if "stats:" in line:
                words = line.split("stats:", 1)[1].replace(",", " ").split()
                for i, w in enumerate(words[:-1]):
                    if w == key and words[i + 1].isdigit():
                        return int(words[i + 1])
        return None

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Stress:
    """tidepool-stress in the background, its --json read at the end."""

    def __init__(self, binary, tmp, name, args):
        self.json_path = os.path.join(tmp, f"{name}.json")
        self.proc = subprocess.Popen([binary, "-q", "--json", self.json_path] + args,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def finish(self, timeout=30):
        try:
            self.out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.out, _ = self.proc.communicate()
            raise Failure("tidepool-stress did not end: " + self.out)
        check(os.path.exists(self.json_path), "no --json from tidepool-stress: " + self.out)
        with open(self.json_path) as f:
            self.j = json.load(f)
        return self

    def err(self, kind):
        return self.j["errors"][kind]

    def errors(self):
        return sum(v for v in self.j["errors"].values() if isinstance(v, int))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
