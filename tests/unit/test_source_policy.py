"""The source policy (media_ray.source_policy): what a stream sent to the API may name. No Ray, no
network: name resolution is monkeypatched, and any connection attempt fails the test."""

from __future__ import annotations

import socket

import pytest

from media_ray.config import MediaRayConfig, SourcePolicyConfig
from media_ray.source_policy import SourcePolicy, SourceRefused, is_public, protocol_whitelist
from media_ray.sources import SOURCE_KINDS


@pytest.fixture(autouse=True)
def no_connections(monkeypatch):
    """The policy never connects: a connection attempt, or a resolution not arranged, fails."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"the policy tried to connect: {args}")

    def unexpected_resolution(host, *args, **kwargs):
        raise AssertionError(f"the policy resolved {host!r}, which this test did not arrange")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", unexpected_resolution)


def resolves_to(monkeypatch, names: dict[str, list[str]]) -> list[str]:
    """Name resolution that answers `names` (host -> addresses); returns the hosts asked for."""
    asked: list[str] = []

    def getaddrinfo(host, port, *args, **kwargs):
        asked.append(host)
        if host not in names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port or 0))
            for a in names[host]
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


@pytest.fixture
def media(tmp_path):
    """A media root holding a clip, and a file outside it."""
    root = tmp_path / "media"
    (root / "sub").mkdir(parents=True)
    clip = root / "sub" / "clip.mp4"
    clip.write_bytes(b"not really a video")
    outside = tmp_path / "secret.mp4"
    outside.write_bytes(b"host file")
    return {"root": root, "clip": clip, "outside": outside}


def policy(**config) -> SourcePolicy:
    return SourcePolicy(SourcePolicyConfig(**config))


def refused(p: SourcePolicy, source: str) -> str:
    with pytest.raises(SourceRefused) as e:
        p.check(source)
    assert isinstance(e.value, ValueError)
    message = str(e.value)
    assert message.startswith("source refused: ") and len(message) > len("source refused: ")
    return message


# -- local files ---------------------------------------------------------------------------------
def test_a_file_under_a_media_root_is_accepted_as_its_resolved_path(media):
    p = policy(media_roots=[str(media["root"])])
    assert p.check(str(media["clip"])) == str(media["clip"].resolve())
    # a path through `..` that stays inside is the same file
    assert p.check(str(media["root"] / "sub" / ".." / "sub" / "clip.mp4")) == str(media["clip"].resolve())


def test_a_file_outside_the_roots_a_dotdot_escape_and_a_link_out_are_refused(media):
    p = policy(media_roots=[str(media["root"])])
    link = media["root"] / "link.mp4"
    link.symlink_to(media["outside"])
    linked_folder = media["root"] / "elsewhere"
    linked_folder.symlink_to(media["outside"].parent)
    outside_messages = {
        refused(p, str(media["outside"])),
        refused(p, str(media["root"] / ".." / "secret.mp4")),
        refused(p, str(link)),
        refused(p, str(linked_folder / "secret.mp4")),
        refused(p, "/etc/passwd"),
        refused(p, "/etc/no-such-file"),
    }
    # one message for them all: it does not tell which host files exist
    assert len(outside_messages) == 1
    assert "media roots" in outside_messages.pop()


def test_a_missing_file_a_folder_and_a_relative_path_are_refused(media):
    p = policy(media_roots=[str(media["root"])])
    assert "no such file" in refused(p, str(media["root"] / "missing.mp4"))
    assert "no such file" in refused(p, str(media["root"] / "sub"))
    assert "media roots" in refused(p, "sub/clip.mp4")
    assert "media roots" in refused(p, str(media["clip"]) + "\n")


def test_without_media_roots_no_local_file_is_accepted(media):
    assert SourcePolicyConfig().media_roots == []
    assert MediaRayConfig().live.policy.media_roots == []
    p = SourcePolicy()
    assert "media_roots" in refused(p, str(media["clip"]))
    assert "media_roots" in refused(p, "/dev/video0")


def test_a_device_is_accepted_only_under_a_media_root(tmp_path):
    devices = tmp_path / "dev"
    devices.mkdir()
    camera = devices / "video0"
    camera.write_bytes(b"")
    assert policy(media_roots=[str(devices)]).check(str(camera)) == str(camera.resolve())
    refused(policy(media_roots=[str(tmp_path / "media")]), "/dev/video0")


# -- schemes -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "source",
    [
        "concat:/etc/passwd|/etc/hosts",
        "pipe:0",
        "tcp://example.com:80",
        "udp://239.0.0.1:1234",
        "data:video/mp4;base64,AAAA",
        "file:///etc/passwd",
        "ftp://example.com/clip.mp4",
        "gopher://example.com/",
        "subfile,,start,0,end,0,,:/etc/passwd",
        "async:http://example.com/clip.mp4",
        "cache:http://example.com/clip.mp4",
        "v4l2:///dev/video0",
        "/dev/video0",
    ],
)
def test_other_schemes_and_devices_are_refused(media, source):
    refused(policy(media_roots=[str(media["root"])]), source)


@pytest.mark.parametrize(
    "source", ["rtmp://example.com/live/x", "rtmp://127.0.0.1:1/live/x", "RTMP://0.0.0.0:1935/a/b"]
)
def test_an_rtmp_url_that_would_make_media_ray_listen_is_refused(source):
    assert SOURCE_KINDS["rtmp"].listens  # every rtmp:// URI is a listener today
    message = refused(policy(allow_private_hosts=True), source)
    assert "listen" in message and '"rtmp"' in message


@pytest.mark.parametrize("source", ["http://example.com/a b.mp4", "http://example.com\\@127.0.0.1/", "http://x\t.com/"])
def test_urls_that_parsers_read_differently_are_refused(source):
    refused(policy(allow_private_hosts=True), source)


# -- hosts ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "source",
    [
        "http://127.0.0.1:6379/",
        "http://10.0.0.1/",
        "http://192.168.1.1/",
        "http://172.16.0.1/",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/",
        "http://[fe80::1]/",
        "http://[fd00::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://[64:ff9b::a00:1]/",
        "http://[2002:7f00:1::]/",
        "http://0.0.0.0:8000/",
        "http://[::]/",
        "http://224.0.0.1/",
        "http://240.0.0.1/",
        "http://100.64.0.1/",
        "https://127.0.0.1/",
        "rtsp://127.0.0.1:8554/cam",
        "rtsps://10.1.2.3/cam",
    ],
)
def test_internal_addresses_are_refused_without_connecting(source):
    message = refused(policy(), source)
    assert "private" in message
    # the message is the same whatever the port: it tells nothing of what listens there
    if ":6379" in source:
        assert message == refused(policy(), source.replace(":6379", ":1"))


def test_a_public_name_resolving_to_a_private_address_is_refused(monkeypatch):
    asked = resolves_to(
        monkeypatch,
        {
            "cdn.example.com": ["93.184.215.14"],
            "rebind.example.com": ["93.184.215.14", "10.0.0.7"],
            "metadata.example.com": ["169.254.169.254"],
            "v6.example.com": ["::1"],
            "octal": ["127.0.0.1"],
        },
    )
    p = policy()
    assert p.check("https://cdn.example.com/live/index.m3u8") == "https://cdn.example.com/live/index.m3u8"
    assert "private" in refused(p, "http://rebind.example.com/clip.mp4")
    assert "private" in refused(p, "http://metadata.example.com/latest/meta-data")
    assert "private" in refused(p, "rtsp://v6.example.com/cam")
    assert "private" in refused(p, "http://octal/")  # what FFmpeg's resolver would make of it, not the text
    assert "cannot be resolved" in refused(p, "http://nowhere.example.com/")
    assert asked == [
        "cdn.example.com",
        "rebind.example.com",
        "metadata.example.com",
        "v6.example.com",
        "octal",
        "nowhere.example.com",
    ]


def test_a_public_address_is_accepted():
    assert policy().check("http://93.184.215.14/clip.mp4") == "http://93.184.215.14/clip.mp4"
    assert policy().check("http://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/x") is not None


def test_allowed_hosts_are_accepted_whatever_they_resolve_to(monkeypatch):
    resolves_to(monkeypatch, {"cam.lan": ["192.168.1.20"]})
    p = policy(allowed_hosts=["127.0.0.1", "CAM.lan", "[::1]"])
    for source in ("http://127.0.0.1:8080/index.m3u8", "rtsp://cam.lan:8554/x", "http://[::1]:9000/a.mp4"):
        assert p.check(source) == source
    assert "private" in refused(p, "http://10.0.0.1/")  # only the hosts named
    assert "private" in refused(p, "http://127.0.0.2/")


def test_allow_private_hosts_accepts_internal_addresses():
    p = policy(allow_private_hosts=True)
    for source in ("http://127.0.0.1:6379/", "http://10.0.0.1/", "http://[::1]/", "rtsp://192.168.0.2/cam"):
        assert p.check(source) == source
    refused(p, "concat:/etc/passwd")  # the schemes stay allow-listed


def test_is_public_knows_the_ranges():
    import ipaddress

    for address in ("8.8.8.8", "93.184.215.14", "2606:4700::1111"):
        assert is_public(ipaddress.ip_address(address)), address
    for address in ("127.0.0.1", "10.1.1.1", "169.254.169.254", "0.0.0.0", "255.255.255.255", "::", "::1", "fe80::1"):
        assert not is_public(ipaddress.ip_address(address)), address


# -- FFmpeg's protocol whitelist ------------------------------------------------------------------
@pytest.mark.parametrize(
    "uri, protocols",
    [
        ("/media/clip.mp4", {"file"}),
        ("/dev/video0", {"file"}),
        ("http://example.com/index.m3u8", {"http", "https", "tcp", "tls", "crypto"}),
        ("https://example.com/clip.mp4", {"http", "https", "tcp", "tls", "crypto"}),
        ("rtsp://example.com/cam", {"rtsp", "rtp", "udp", "tcp"}),
        ("rtsps://example.com/cam", {"rtsp", "rtp", "udp", "tcp", "tls"}),
        ("rtmp://127.0.0.1:1935/live/key", {"rtmp", "tcp"}),
    ],
)
def test_each_scheme_has_its_protocol_whitelist(uri, protocols):
    assert set(protocol_whitelist(uri).split(",")) == protocols


def test_open_source_always_passes_the_whitelist(monkeypatch, media):
    import av

    from media_ray import sources

    opened = []
    monkeypatch.setattr(av, "open", lambda target, **kwargs: opened.append(kwargs["options"]))
    sources.open_source(str(media["clip"]), {"protocol_whitelist": "file,http,tcp", "probesize": "32"})
    sources.open_source("http://example.com/index.m3u8")
    assert opened[0]["protocol_whitelist"] == "file" and opened[0]["probesize"] == "32"
    assert opened[1]["protocol_whitelist"] == "http,https,tcp,tls,crypto"
