"""How a client connects: transport security, the bearer token and
keepalive, shared by :class:`~varwatch.Client` and
:class:`~varwatch.AsyncClient`."""

from __future__ import annotations

import os
from typing import Any, Iterable, List, Mapping, Optional, Tuple

import grpc

DEFAULT_TARGET = "127.0.0.1:50051"
"""Where ``varwatch serve`` listens by default."""

TARGET_ENV = "VARWATCH_SERVER"
"""The environment variable that names the server when a client is given
no target, as for the ``varwatch`` command line."""


def resolve_target(target: Optional[str]) -> str:
    """target, else $VARWATCH_SERVER, else DEFAULT_TARGET."""
    return target or os.environ.get(TARGET_ENV) or DEFAULT_TARGET


# Keepalive pings after 30s without activity (even with no call open), and
# a connection whose ping is unanswered for 10s is dropped. varwatch serve
# accepts pings at most every 10s; more often and it closes the connection.
DEFAULT_KEEPALIVE: Tuple[Tuple[str, Any], ...] = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
)


def channel_setup(
    *,
    credentials: Optional[grpc.ChannelCredentials],
    tls: bool,
    root_certificates: Optional[bytes],
    private_key: Optional[bytes],
    certificate_chain: Optional[bytes],
    server_name: Optional[str],
    token: Optional[str],
    channel_options: Optional[Iterable[Tuple[str, Any]]],
    metadata: Optional[Mapping[str, str]],
) -> Tuple[Optional[grpc.ChannelCredentials], List[Tuple[str, Any]], Optional[Tuple[Tuple[str, str], ...]]]:
    """The channel credentials (None: plaintext), channel options and call
    metadata of a client's arguments."""
    pem_given = root_certificates is not None or private_key is not None or certificate_chain is not None
    if credentials is not None and (tls or pem_given):
        raise ValueError("give credentials or the TLS arguments (tls, root_certificates, private_key, certificate_chain), not both")
    if (private_key is None) != (certificate_chain is None):
        raise ValueError("a client certificate needs both private_key and certificate_chain")
    if credentials is None and (tls or pem_given):
        credentials = grpc.ssl_channel_credentials(
            root_certificates=root_certificates, private_key=private_key, certificate_chain=certificate_chain)
    opts = list(channel_options or ())
    if server_name:
        if credentials is None:
            raise ValueError("server_name applies to TLS connections only")
        opts.append(("grpc.ssl_target_name_override", server_name))
    given = {k for k, _ in opts}
    opts.extend(kv for kv in DEFAULT_KEEPALIVE if kv[0] not in given)
    md = [(k.lower(), v) for k, v in (metadata or {}).items()]
    if token:
        if any(k == "authorization" for k, _ in md):
            raise ValueError("give token or an authorization metadata entry, not both")
        md.append(("authorization", "Bearer " + token))
    return credentials, opts, tuple(md) or None
