"""
Tests for L{meetrd.settings}.
"""

from pathlib import Path

import pytest

from meetrd.schema import replicationCQL
from meetrd.settings import (
    SettingsError,
    loadSettings,
    parseNode,
    settingsFromMapping,
)

SHIPPED = Path(__file__).resolve().parent.parent / "etc/meetr/meetr.yaml"


def test_shippedFileLoads():
    """
    The shipped settings file is valid and says what the defaults say.
    """
    shipped = loadSettings(str(SHIPPED))
    defaults = settingsFromMapping({}, "defaults")
    assert shipped == defaults


def test_shippedFileDocumentsEveryKey():
    """
    Every settings key (nested ones too) appears in the shipped file.
    """
    text = SHIPPED.read_text()
    defaults = settingsFromMapping({}, "defaults").model_dump()

    def keys(mapping, prefix=""):
        for key, value in mapping.items():
            yield key
            if isinstance(value, dict) and key not in ("replication",):
                yield from keys(value)

    missing = [k for k in keys(defaults) if f"{k}:" not in text]
    assert missing == []


def test_valuesParsed():
    """
    Durations, sizes and nested keys become typed values.
    """
    settings = settingsFromMapping({
        "retention": "30d",
        "http": {"max_body_size": "1MiB"},
        "cassandra": {"contact_points": ["10.0.0.1", "10.0.0.2"],
                      "port": 19042, "request_timeout": "1500ms"},
    }, "x.yaml")
    assert settings.retentionSeconds == 30 * 86400
    assert settings.http.max_body_size == 1024 * 1024
    assert settings.cassandra.contact_points == ("10.0.0.1", "10.0.0.2")
    assert settings.cassandra.request_timeout == 1.5


def test_immutable():
    """
    Settings cannot be changed once loaded.
    """
    settings = settingsFromMapping({}, "x.yaml")
    with pytest.raises(Exception):
        settings.listen = "tcp:1"
    with pytest.raises(Exception):
        settings.cassandra.port = 1


@pytest.mark.parametrize("data, message", [
    ({"bogus": 1}, "x.yaml: bogus: unknown key"),
    ({"cassandra": {"prot": 1}}, "x.yaml: cassandra.prot: unknown key"),
    ({"cassandra": {"port": "abc"}}, "x.yaml: cassandra.port:"),
    ({"cassandra": {"port": 70000}}, "x.yaml: cassandra.port:"),
    ({"retention": "forever"}, "x.yaml: retention: expected a duration"),
    ({"cassandra": {"keyspace": "a-b"}}, "x.yaml: cassandra.keyspace:"),
    ({"cassandra": {"consistency": {"read": "MOST"}}},
     "x.yaml: cassandra.consistency.read:"),
    ({"cassandra": {"replication": {"class": "Bogus"}}},
     "x.yaml: cassandra.replication:"),
    ({"cassandra": {"contact_points": []}},
     "x.yaml: cassandra.contact_points:"),
    ({"cassandra": {"index_slice": "1500ms"}},
     "x.yaml: cassandra.index_slice: an index slice is whole seconds"),
    ({"cassandra": {"index_slice": "8d"}},
     "x.yaml: cassandra.index_slice: an index slice is whole seconds"),
    ({"cassandra": {"max_reads_in_flight": 0}},
     "x.yaml: cassandra.max_reads_in_flight:"),
    ({"limits": {"search_timeout": 0}},
     "x.yaml: limits.search_timeout: Input should be greater than 0"),
    ({"limits": {"max_search_points": -1}},
     "x.yaml: limits.max_search_points:"),
    ({"hunter": {"targets": [{"job": "j", "nodes": ["h:1"],
                              "interval": "1s", "timeout": "2s"}]}},
     "x.yaml: hunter.targets.0: timeout must be more than 0 and never above"),
    ({"hunter": {"allow": ["300.0.0.0/8"]}}, "x.yaml: hunter.allow:"),
    ({"hunter": {"shard": {"index": 2, "count": 2}}}, "x.yaml: hunter.shard:"),
    ({"hunter": {"slot": "-100ms"}},
     "x.yaml: hunter.slot: expected a duration"),
    ({"hunter": {"slot": 5}}, "x.yaml: hunter.slot: a duration needs a unit"),
    ([1, 2], "x.yaml: expected a mapping"),
])
def test_badSettings(data, message):
    """
    A bad key or value is named, with the file, on one line.
    """
    with pytest.raises(SettingsError) as caught:
        settingsFromMapping(data, "x.yaml")
    text = str(caught.value)
    assert text.startswith(message)
    assert "\n" not in text


def test_missingFile(tmp_path):
    """
    A missing file is named with the reason.
    """
    path = tmp_path / "nope.yaml"
    with pytest.raises(SettingsError, match=r"nope.yaml: cannot read: No such"):
        loadSettings(str(path))


def test_invalidYAML(tmp_path):
    """
    A file that is not YAML is named with the line of the fault.
    """
    path = tmp_path / "bad.yaml"
    path.write_text("listen: tcp:1\ncassandra: [unclosed\n")
    with pytest.raises(SettingsError, match=r"bad.yaml: invalid YAML at line"):
        loadSettings(str(path))


def test_emptyFileIsDefaults(tmp_path):
    """
    An empty file gives the defaults.
    """
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert loadSettings(str(path)) == settingsFromMapping({}, "x")


def test_replicationCQL():
    """
    The replication map becomes a CQL map literal of validated parts only.
    """
    settings = settingsFromMapping({"cassandra": {"replication": {
        "class": "NetworkTopologyStrategy", "dc1": 3, "dc2": "2"}}}, "x")
    assert replicationCQL(settings.cassandra) == (
        "{'class': 'NetworkTopologyStrategy', 'dc1': '3', 'dc2': '2'}")
    with pytest.raises(SettingsError):
        settingsFromMapping({"cassandra": {"replication": {
            "class": "NetworkTopologyStrategy", "dc1'": 3}}}, "x")


@pytest.mark.parametrize("node, expected", [
    ("127.0.0.1:9100", ("127.0.0.1", 9100)),
    ("[::1]:9100", ("::1", 9100)),
    ("web-1.example:80", ("web-1.example", 80)),
])
def test_parseNode(node, expected):
    """
    host:port, bracketed IPv6 included, splits into host and port.
    """
    assert parseNode(node) == expected


@pytest.mark.parametrize("node", ["h", "h:", ":80", "h:0", "h:99999",
                                  "a b:80", "u@h:80", "h/x:80", "::1:80"])
def test_badNode(node):
    """
    Anything but host:port is refused.
    """
    with pytest.raises(ValueError):
        parseNode(node)


def test_tokenFromFile(tmp_path):
    """
    A token may be read from a file, and never shows in the settings' text.
    """
    secret = tmp_path / "token"
    secret.write_text("s3cret-s3cret-s3cret\n")
    settings = settingsFromMapping({"auth": {"tokens": [
        {"token_file": str(secret), "roles": ["write"]}]}}, "x.yaml")
    token = settings.auth.tokens[0]
    assert token.token.get_secret_value() == "s3cret-s3cret-s3cret"
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize("token, message", [
    ({"token": "short", "roles": ["read"]}, "at least 16 characters"),
    ({"token": "x" * 16, "roles": []}, "at least one role"),
    ({"token": "x" * 16, "roles": ["root"]}, "auth.tokens.0.roles.0"),
    ({"roles": ["read"]}, "exactly one of token and token_file"),
    ({"token_file": "/nonexistent/token", "roles": ["read"]},
     "token_file /nonexistent/token: No such file"),
])
def test_badTokens(token, message):
    """
    Short, role-less or unreadable tokens are refused, naming the key.
    """
    with pytest.raises(SettingsError, match="auth.tokens.0") as caught:
        settingsFromMapping({"auth": {"tokens": [token]}}, "x.yaml")
    assert message in str(caught.value)


def test_instanceOptionNamesTheMember(tmp_path, capsys) -> None:
    """C{twistd meetr --instance NAME} (what the init scripts pass) names this instance among the members sharing the hunt, over C{hunter.instance}; an empty name ends with one line."""
    from meetrd.tap import Options

    config = tmp_path / "meetr.yaml"
    config.write_text("hunter:\n  instance: from-the-file\n")
    options = Options()
    options.parseOptions(["-c", str(config), "--instance", "db7:8881"])
    assert options.settings.hunter.instance == "db7:8881"
    assert options.settings.hunter.shard == "auto"
    plain = Options()
    plain.parseOptions(["-c", str(config)])
    assert plain.settings.hunter.instance == "from-the-file"
    with pytest.raises(SystemExit):
        Options().parseOptions(["-c", str(config), "--instance", " "])
    assert capsys.readouterr().err == "meetr: --instance: a name is needed\n"
