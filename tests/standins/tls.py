"""Test TLS: a throwaway CA (trustme), a server certificate for 127.0.0.1 and localhost, a CA bundle file."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class TestTLS:
    """What a stand-in server and its clients need: the server's TLS context and the CA bundle to trust."""

    __test__ = False  # not a pytest test class

    ca: trustme.CA
    server_context: ssl.SSLContext
    ca_bundle: Path

    def client_context(self) -> ssl.SSLContext:
        """A client context trusting only the test CA (for clients other than requests)."""
        context = ssl.create_default_context(cafile=str(self.ca_bundle))
        return context


def make_tls(directory: Path) -> TestTLS:
    """Create the CA, issue the server certificate and write the CA bundle PEM into `directory`."""
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    leaf.configure_cert(context)
    directory.mkdir(parents=True, exist_ok=True)
    bundle = directory / "standin-ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    return TestTLS(ca=ca, server_context=context, ca_bundle=bundle)
