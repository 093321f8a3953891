"""oci:// references are parsed strictly before any I/O; plain HTTP only to loopback."""

from __future__ import annotations

import pytest

from mlspec_attest.errors import InputError
from mlspec_attest.oci.layout import Descriptor, LayoutError, check_title
from mlspec_attest.oci.reference import OciReference
from mlspec_attest.oci.registry import RegistryClient

DIGEST = "sha256:" + "ab" * 32


def test_tag_and_digest_references_parse() -> None:
    ref = OciReference.parse("oci://127.0.0.1:5000/models/credit:v1")
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == ("127.0.0.1:5000", "models/credit", "v1", None)
    ref = OciReference.parse(f"oci://registry.example.com/a/b/c@{DIGEST}")
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == ("registry.example.com", "a/b/c", None, DIGEST)
    assert str(ref) == f"oci://registry.example.com/a/b/c@{DIGEST}"
    assert str(OciReference.parse("oci://localhost:5000/m").with_digest(DIGEST)) == f"oci://localhost:5000/m@{DIGEST}"


@pytest.mark.parametrize("url", [
    "s3://bucket/x",                                  # another scheme
    "oci://host",                                     # no repository
    "oci://user:pw@host/repo:v1",                     # credentials in the URL (would be echoed in messages)
    "oci://host/Repo:v1",                             # uppercase repository
    "oci://host/repo/../x:v1",                        # path tricks
    "oci://host/repo@sha256:abc",                     # short digest
    "oci://host/repo@md5:" + "0" * 32,                # other algorithm
    "oci://host/repo:bad tag",                        # bad tag
    "oci://host:99999/repo:v1",                       # port out of range
])
def test_bad_references_are_input_errors(url: str) -> None:
    with pytest.raises(InputError):
        OciReference.parse(url)


@pytest.mark.parametrize("host,loopback", [
    ("127.0.0.1:5000", True), ("127.8.9.10", True), ("[::1]:5000", True), ("localhost:5000", True),
    ("10.0.0.1:5000", False), ("registry.example.com", False), ("localhost.evil.com", False),
    ("127.0.0.1.nip.io", False), ("[::ffff:10.0.0.1]", False),
])
def test_only_loopback_is_loopback(host: str, loopback: bool) -> None:
    assert OciReference.parse(f"oci://{host}/repo:v1").is_loopback is loopback


@pytest.mark.parametrize("host", ["registry.example.com", "10.0.0.1:5000", "127.0.0.1.nip.io", "localhost.evil.com"])
def test_plain_http_to_a_non_loopback_host_is_refused(host: str) -> None:
    """Attack: --plain-http to a remote registry lets anyone on the path swap the chain; refused before I/O."""
    with pytest.raises(InputError, match="loopback registries only"):
        RegistryClient(OciReference.parse(f"oci://{host}/repo:v1"), plain_http=True)


@pytest.mark.parametrize("title", ["../evil", "/etc/passwd", "a/../../b", "a//b", "", "a\\b", ".hidden", "a/./b",
                                   "x" * 2000])
def test_layer_titles_that_could_escape_are_refused(title: str) -> None:
    """Attack: a registry names a layer ``../x`` to make pull write outside DIR."""
    with pytest.raises(LayoutError):
        check_title(title, "layer")


@pytest.mark.parametrize("descriptor", [
    {"mediaType": "x", "digest": "sha256:" + "0" * 63, "size": 1},
    {"mediaType": "x", "digest": "sha512:" + "0" * 128, "size": 1},
    {"mediaType": "x", "digest": DIGEST, "size": -1},
    {"mediaType": "x", "digest": DIGEST, "size": True},
    {"mediaType": "x", "digest": DIGEST, "size": 1.5},
    {"mediaType": "", "digest": DIGEST, "size": 1},
    {"mediaType": "x", "digest": DIGEST, "size": 1, "annotations": {"a": 1}},
    [],
])
def test_malformed_descriptors_are_refused(descriptor: object) -> None:
    with pytest.raises(LayoutError):
        Descriptor.from_dict(descriptor, "descriptor")
