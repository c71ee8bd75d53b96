"""
TLS for real, with certificates made for the test: the API listening with
TLS, and meetrd talking to a Cassandra node that accepts TLS only, its
certificate and name checked.
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request

import pytest
import pytest_twisted
from twisted.internet import reactor

from meetrd.readplan import bucketsBySource
from meetrd.points import Point
from meetrd.settings import settingsFromMapping
from meetrd.store import MetricStore, StoreUnavailable
from tests.certificates import issue
from tests.support import Daemon, daemonSettings
from tests.test_outage import SpareNode

pytestmark = [pytest.mark.cassandra]


@pytest.mark.daemon
def test_apiOverTLS(tmp_path, node, keyspace):
    """
    With an ssl: endpoint, the API answers HTTPS checked against the test
    CA, and a client trusting another CA is refused.
    """
    pki = issue(tmp_path / "pki")
    listen = (f"ssl:0:interface=127.0.0.1:privateKey={pki.key}:"
              f"certKey={pki.cert}")
    daemon = Daemon(tmp_path / "d", daemonSettings(keyspace, node,
                                                   listen=listen)).start()
    try:
        url = f"https://localhost:{daemon.port}/health"
        trusting = ssl.create_default_context(cafile=str(pki.ca))
        with urllib.request.urlopen(url, context=trusting, timeout=30) as r:
            assert r.status == 200
        stranger = ssl.create_default_context(
            cafile=str(issue(tmp_path / "other", caName="other CA").ca))
        with pytest.raises(urllib.error.URLError) as caught:
            urllib.request.urlopen(url, context=stranger, timeout=30)
        assert isinstance(caught.value.reason, ssl.SSLCertVerificationError)
    finally:
        assert daemon.stop() == 0


@pytest.fixture(scope="module")
def tlsNode(tmp_path_factory):
    """
    A second local node that speaks TLS only on its CQL port.
    """
    home = tmp_path_factory.mktemp("tlsnode")
    pki = issue(home / "pki")
    node = SpareNode(home / "node")
    node.env["MEETR_NODE_CLIENT_TLS"] = str(home / "pki")
    node.start()
    try:
        yield node, pki, home
    finally:
        node.stop()


def storeFor(port, **tls):
    settings = settingsFromMapping({"cassandra": {
        "contact_points": ["127.0.0.1"], "port": port, "keyspace": "meetr_tls",
        "connect_timeout": "3s",
        "consistency": {"read": "ONE", "write": "ONE"}, "tls": tls}}, "test")
    return MetricStore(settings.cassandra, 0, reactor)


@pytest_twisted.ensureDeferred
async def test_cassandraOverTLS(tlsNode):
    """
    With the node's CA, meetrd connects over TLS, writes and reads.
    """
    node, pki, _ = tlsNode
    store = storeFor(node.port, enabled=True, ca_file=str(pki.ca))
    await store.connect()
    try:
        assert await store.writePoints([Point("tls", (), 1000, 2.0)]) == 1
        series = await store.findSeries("tls", 0, 2000, (), 10)
        summaries = await store.summarize(
            bucketsBySource(series, 0, 2000, store.sliceMs), 0, 2000)
        assert sum(s.partial.total for s in summaries) == 2.0
    finally:
        await store.close()


@pytest.mark.parametrize("tls, why", [
    ({}, "plain text to a TLS port"),
    ({"wrongCA": True}, "a certificate from another CA"),
    ({"server_name": "cassandra.example"}, "a name not in the certificate"),
])
@pytest_twisted.ensureDeferred
async def test_cassandraTLSRefused(tlsNode, tls, why):
    """
    Plain text, an untrusted certificate or a wrong name do not connect.
    """
    node, pki, home = tlsNode
    options = {}
    if tls:
        options = {"enabled": True, "ca_file": str(pki.ca)}
        if tls.get("wrongCA"):
            options["ca_file"] = str(issue(home / "other", caName="x").ca)
        if "server_name" in tls:
            options["server_name"] = tls["server_name"]
    store = storeFor(node.port, **options)
    with pytest.raises(StoreUnavailable):
        await store.connect()
    assert not store.ready, why


@pytest_twisted.ensureDeferred
async def test_nameCheckCanBeTurnedOff(tlsNode):
    """
    With check_hostname false, a certificate of the right CA is enough.
    """
    node, pki, _ = tlsNode
    store = storeFor(node.port, enabled=True, ca_file=str(pki.ca),
                     server_name="cassandra.example", check_hostname=False)
    await store.connect()
    await store.close()
