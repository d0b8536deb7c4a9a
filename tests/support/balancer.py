"""nginx as the one address in front of several receivers, as an ingress or a load balancer
puts it in front of replicas in production.

Why nginx and not SO_REUSEPORT or a balancer of our own: it is what many clusters put in
front of a Deployment (ingress-nginx), its failure handling is documented and well known,
and a balancer written for the test would test our reading of how a balancer behaves.
SO_REUSEPORT needs every replica to bind the same port itself (uvicorn does not set it),
and the kernel then hands a dead replica's not-yet-accepted connections to nobody.

How it is set up, and why:

- Round robin over fixed ports, so a replica restarted on its port is back in the pool
  without a reload.
- No keep-alive to the receivers: a new connection per request, so a request to a
  replica that was SIGKILLed finds nothing listening (connection refused) and nginx passes
  it to the next one (``proxy_next_upstream error timeout``, its default). A request
  already sent to a replica that dies is not passed on (POST is not idempotent for nginx):
  the client gets 502 and retries, as Alertmanager retries any 5xx.
- ``max_fails=1 fail_timeout=1s``: a refused replica is left out for a second, so a
  restarted one gets traffic again soon.
- A 503 from a receiver (its store is down) is handed back as it is: every replica shares
  the one store, so another replica would answer the same.
- The access log names the replica (``$upstream_addr``) that answered each request, and
  every replica tried when there were several.
"""

from __future__ import annotations

import contextlib
import getpass
import grp
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import binary, free_port, running

# One line per request: the replicas tried (", "-separated when nginx passed it on),
# their statuses, the status the client got, and nginx's time for it.
_LOG_FORMAT = "$upstream_addr|$upstream_status|$status|$request_time"


@dataclass(frozen=True)
class Balancer:
    url: str
    pid: int
    access_log: Path

    def routed(self) -> RoutedRequests:
        """What the access log says so far: requests per replica, and how many nginx
        passed on to another replica."""
        per_replica: Counter[str] = Counter()
        passed_on = 0
        for line in self.access_log.read_text(errors="replace").splitlines():
            upstreams = line.split("|", 1)[0]
            tried = [u.strip() for u in upstreams.split(",") if u.strip() not in ("", "-")]
            if tried:
                per_replica[tried[-1]] += 1
            passed_on += len(tried) > 1
        return RoutedRequests(per_replica=per_replica, passed_on=passed_on)


@dataclass(frozen=True)
class RoutedRequests:
    per_replica: Counter[str]
    """The replica (``127.0.0.1:port``) that gave the last answer, per request."""
    passed_on: int
    """Requests nginx tried on more than one replica."""


def nginx_config(port: int, upstreams: Sequence[int], workdir: Path) -> str:
    # Only a master running as root switches its workers to another user; the workers
    # touch only this test's directory, so they keep the test's user.
    user = (
        f"user {getpass.getuser()} {grp.getgrgid(os.getgid()).gr_name};\n"
        if os.geteuid() == 0
        else ""
    )
    servers = "".join(f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=1s;\n" for p in upstreams)
    temp = "".join(
        f"  {kind}_temp_path {workdir / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"{user}"
        "worker_processes 1;\n"
        "daemon off;\n"
        f"pid {workdir / 'nginx.pid'};\n"
        f"error_log {workdir / 'error.log'} warn;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        f"  log_format routed '{_LOG_FORMAT}';\n"
        f"  access_log {workdir / 'access.log'} routed;\n"
        f"{temp}"
        # The receiver's own limit (server.max_body_bytes) is 5 MiB; nginx's default is 1.
        "  client_max_body_size 6m;\n"
        "  client_body_buffer_size 1m;\n"
        "  upstream receivers {\n"
        f"{servers}"
        "  }\n"
        "  server {\n"
        f"    listen 127.0.0.1:{port};\n"
        "    location / {\n"
        "      proxy_pass http://receivers;\n"
        "      proxy_next_upstream error timeout;\n"
        "      proxy_connect_timeout 1s;\n"
        # Above the receiver's own time on a webhook while its store is down (redis-py's
        # retries over 2 s socket timeouts): a slow answer is the receiver's, not nginx's.
        "      proxy_read_timeout 30s;\n"
        "      proxy_set_header Host $host;\n"
        "    }\n"
        "  }\n"
        "}\n"
    )


@contextlib.contextmanager
def nginx_balancer(workdir: Path, upstreams: Sequence[int]) -> Iterator[Balancer]:
    """nginx on a free 127.0.0.1 port, round robin over ``upstreams`` (ports on
    127.0.0.1); stopped by its PID after."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = workdir / "nginx.conf"
    conf.write_text(nginx_config(port, upstreams, workdir))
    # -e: nginx's own early errors go to the test's directory, not /var/log/nginx.
    args = [binary("nginx"), "-p", str(workdir), "-e", str(workdir / "error.log"), "-c", str(conf)]
    with running(args, port, workdir / "nginx.log") as proc:
        yield Balancer(
            url=f"http://127.0.0.1:{port}", pid=proc.pid, access_log=workdir / "access.log"
        )
