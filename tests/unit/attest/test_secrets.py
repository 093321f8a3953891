"""Secret redaction before signing (Hardening, point 4)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from mlspec_attest._internal.loaders import load_mapping, parse_yaml
from mlspec_attest.attest.redaction import REDACTED, is_secret_key, redact, secret_pattern, warning
from mlspec_attest.errors import InputError
from mlspec_attest.model.canonical import canonicalize

SEED_ACCESS_KEY_ID = "xxxxxxxxxx"
SEED_SECRET_ACCESS_KEY = "xxxxxxxxxxxxx"


def _valid_prefix(path: Path) -> dict:
    """The seed's model-packaging files stop being YAML at ``data_store_file_paths``; the part
    before it (which holds ``data_stores`` and its credentials) is valid and is what a user who
    fixed the file would feed in."""
    text = path.read_text("utf-8")
    prefix = text[: text.index("\ndata_store_file_paths:")]
    value = parse_yaml(prefix.encode("utf-8"), source=str(path))
    assert isinstance(value, dict)
    return value


# --- the seed's data_stores credentials ------------------------------------------


@pytest.mark.parametrize(
    ("name", "base"),
    [
        ("model_packaging.yaml", "/data_stores/0/connection"),
        ("model_training.yaml", "/data_stores/0/connection"),
        ("model_serving.yaml", "/data_stores/0/connection"),
        ("model_scoring.yaml", "/data_stores/0/connection"),
        ("model_onnx_conversion.yaml", "/convert/data_stores/0/connection"),
    ],
)
def test_seed_data_store_credentials_are_redacted(seed: Path, name: str, base: str) -> None:
    metadata = _valid_prefix(seed / "model_packaging" / name)
    original = copy.deepcopy(metadata)
    result, pointers = redact(metadata)
    assert pointers == [f"{base}/access_key_id", f"{base}/secret_access_key"]
    assert metadata == original, "redact must not modify its input"
    canonical = canonicalize(result).decode("utf-8")
    assert SEED_ACCESS_KEY_ID not in canonical and SEED_SECRET_ACCESS_KEY not in canonical
    connection = result
    for token in base.strip("/").split("/"):
        connection = connection[int(token)] if isinstance(connection, list) else connection[token]
    assert connection["access_key_id"] == REDACTED and connection["secret_access_key"] == REDACTED
    assert connection["endpoint"] == "https://s3-api.us-geo.objectstorage.softlayer.net"


def test_seed_model_example_with_data_stores(seed: Path) -> None:
    """model_example.yml itself holds no credential; combined with the seed's data_stores block
    (as a user registering that model would write it) only the two credentials go."""
    example = load_mapping(seed / "model_packaging" / "model_example.yml")
    assert redact(example) == (example, [])
    stores = _valid_prefix(seed / "model_packaging" / "model_packaging.yaml")["data_stores"]
    metadata = dict(example, data_stores=stores)
    result, pointers = redact(metadata)
    assert pointers == ["/data_stores/0/connection/access_key_id", "/data_stores/0/connection/secret_access_key"]
    canonical = canonicalize(result).decode("utf-8")
    assert SEED_ACCESS_KEY_ID not in canonical and SEED_SECRET_ACCESS_KEY not in canonical
    assert result["custom"] == example["custom"] and result["framework"] == example["framework"]


@pytest.mark.parametrize(
    "relpath",
    ["model_packaging/model_example.yml", "model_packaging/model.yaml", "model_packaging/data.yaml",
     "data/dataset.yml", "experiment_tracking/experiment_example.yml"],
)
def test_seed_files_without_credentials_are_untouched(seed: Path, relpath: str) -> None:
    metadata = load_mapping(seed / relpath)
    assert redact(metadata) == (metadata, [])


def test_empty_registry_token_is_not_a_secret(seed: Path) -> None:
    metadata = {"container_stores": [{"name": "c", "connection": {"container_registry": "docker.io",
                                                                   "container_registry_token": ""}}]}
    assert redact(metadata) == (metadata, [])
    metadata["container_stores"][0]["connection"]["container_registry_token"] = "dckr_pat_abc123"
    assert redact(metadata)[1] == ["/container_stores/0/connection/container_registry_token"]


# --- --allow-secret --------------------------------------------------------------


def test_allow_secret_keeps_exactly_one() -> None:
    metadata = {"conn": {"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "wJalrXUtnFEMI/K7MDENG"}}
    result, pointers = redact(metadata, allow=["/conn/access_key_id"])
    assert pointers == ["/conn/secret_access_key"]
    assert result["conn"]["access_key_id"] == "AKIAIOSFODNN7EXAMPLE"
    assert result["conn"]["secret_access_key"] == REDACTED


def test_allow_secret_on_a_parent_keeps_everything_under_it() -> None:
    metadata = {"conn": {"password": "p", "token": "t"}, "other": {"password": "q"}}
    result, pointers = redact(metadata, allow=["/conn"])
    assert pointers == ["/other/password"]
    assert result["conn"] == {"password": "p", "token": "t"}


@pytest.mark.parametrize("pointer", ["/conn/acces_key_id", "/nope", "/list/5", "/list/01", "/conn/password/x"])
def test_allow_secret_pointer_that_does_not_exist_is_an_error(pointer: str) -> None:
    metadata = {"conn": {"password": "p"}, "list": ["a"]}
    with pytest.raises(InputError) as exc:
        redact(metadata, allow=[pointer])
    assert str(exc.value) == f"--allow-secret {pointer!r}: no such value in the metadata (check the pointer)"


@pytest.mark.parametrize("pointer", ["conn/password", "", "/a~2b"])
def test_allow_secret_malformed_pointer_is_an_error(pointer: str) -> None:
    with pytest.raises(InputError, match="--allow-secret"):
        redact({"conn": {"password": "p"}}, allow=[pointer])


def test_allow_secret_on_a_non_secret_is_harmless() -> None:
    metadata = {"name": "m", "password": "p"}
    assert redact(metadata, allow=["/name"]) == ({"name": "m", "password": REDACTED}, ["/password"])


# --- pointers --------------------------------------------------------------------


def test_pointers_escape_tilde_and_slash_and_are_sorted() -> None:
    metadata = {"z/x": {"token": "t1"}, "a~b": {"password": "p"}, "list": [{"api_key": "k"}, "ghp_" + "a" * 36]}
    result, pointers = redact(metadata)
    assert pointers == sorted(["/z~1x/token", "/a~0b/password", "/list/0/api_key", "/list/1"])
    assert result["list"][1] == REDACTED
    # The escaped pointers can be fed back to --allow-secret.
    kept, rest = redact(metadata, allow=["/z~1x/token", "/a~0b/password"])
    assert rest == ["/list/0/api_key", "/list/1"] and kept["z/x"]["token"] == "t1"


def test_everything_under_a_secret_key_is_redacted_leaf_by_leaf() -> None:
    metadata = {"credentials": {"user": "bob", "key": "k", "enabled": True, "port": 5432, "note": None, "list": ["a", ""]}}
    result, pointers = redact(metadata)
    assert pointers == ["/credentials/key", "/credentials/list/0", "/credentials/port", "/credentials/user"]
    assert result["credentials"]["enabled"] is True and result["credentials"]["note"] is None
    assert result["credentials"]["list"] == [REDACTED, ""]


def test_redaction_is_idempotent() -> None:
    once, pointers = redact({"password": "p", "url": "postgres://u:pw@db/x"})
    assert pointers == ["/password", "/url"]
    assert redact(once) == (once, [])


# --- detection -------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["password", "db_password", "passwd", "PASSWORD", "passphrase", "secret", "client_secret", "clientSecret",
     "secret_access_key", "secretAccessKey", "SECRET-ACCESS-KEY", "AWS_SECRET_ACCESS_KEY", "access_key_id",
     "accessKeyId", "aws_access_key_id", "token", "access_token", "github_token", "container_registry_token",
     "api_key", "apiKey", "APIKey", "x-api-key", "apikey", "private_key", "privateKey", "credentials",
     "credential", "auth", "basicAuth", "Authorization", "account_key", "signing_key", "cookie"],
)
def test_secret_key_names(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key",
    ["token_count", "tokenCount", "max_tokens", "tokenizer", "tokens", "author", "authentication", "keyid", "key",
     "public_key", "key_id", "secret_name", "secretRef", "password_file", "password_env", "token_url", "token_type",
     "private_key_id", "name", "endpoint", "passing", "monkey", "turkey", "accessible", "", "---"],
)
def test_not_secret_key_names(key: str) -> None:
    assert not is_secret_key(key)


@pytest.mark.parametrize(
    "value",
    [
        "AKIAIOSFODNN7EXAMPLE",
        "key is ASIAY34FZKBOKMUTVV7A here",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEow...\n-----END RSA PRIVATE KEY-----",
        "-----BEGIN PRIVATE KEY-----\nMC4CAQ...",
        "-----BEGIN OPENSSH PRIVATE KEY-----",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "ghp_" + "A1b2" * 9,
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
        "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
        "AIza" + "B" * 35,
        "sk-" + "a1" * 20,
        "sk_live_" + "a1" * 12,
        "postgres://bob:hunter2@db.internal:5432/loans",
        "https://user:pa55@artifacts.example.com/models",
        "Driver={ODBC Driver 18};Server=tcp:db;Database=loans;Uid=bob;Pwd=hunter2;",
        "Server=db;Database=loans;User Id=bob;Password=hunter2;",
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=Zm9vYmFy==;EndpointSuffix=core.windows.net",
    ],
)
def test_secret_values(value: str) -> None:
    assert secret_pattern(value)
    result, pointers = redact({"description": value})
    assert pointers == ["/description"] and result == {"description": REDACTED}


@pytest.mark.parametrize(
    "value",
    [
        "https://s3-api.us-geo.objectstorage.softlayer.net",
        "https://user@host/path",
        "http://example.com:8080/path",
        "s3://bucket/prefix/model.pt",
        "git@github.com:org/repo.git",
        "-----BEGIN PUBLIC KEY-----\nMCow...",
        "Server=db;Database=loans;Trusted_Connection=yes;",
        "skip-connection-pooling-for-now",
        "AKIA-not-a-key",
        "tensorflow/tensorflow:latest-gpu-py3",
        "sha256:" + "a" * 64,
        "python3 train.py --password-file /run/secrets/db",
        "xxx",
    ],
)
def test_not_secret_values(value: str) -> None:
    assert secret_pattern(value) is None
    assert redact({"description": value}) == ({"description": value}, [])


@pytest.mark.parametrize("value", [True, False, None, "", "   ", [], {}])
def test_secret_keys_with_empty_or_boolean_values_are_kept(value: object) -> None:
    metadata = {"password": value, "token": value}
    assert redact(metadata) == (metadata, [])


def test_numbers_under_secret_keys_are_redacted_but_counts_are_not() -> None:
    metadata = {"pin_password": 1234, "token_count": 512, "max_tokens": 4096, "tokenizer": "bpe",
                "metrics": {"accuracy": 0.9}}
    result, pointers = redact(metadata)
    assert pointers == ["/pin_password"]
    assert result["token_count"] == 512 and result["tokenizer"] == "bpe"


def test_realistic_train_metadata_has_no_false_positives() -> None:
    metadata = {
        "framework": {"name": "transformers", "version": "4.40"},
        "tokenizer": "bpe", "max_tokens": 2048, "token_count": 10_000_000,
        "hyperparameters": {"lr": 3e-4, "warmup_steps": 100},
        "author": {"name": "Ana", "email": "ana@example.com"},
        "authentication": "oidc", "secret_name": "hf-token", "keyid": "a" * 64,
        "public_key": "-----BEGIN PUBLIC KEY-----\nMCow...\n-----END PUBLIC KEY-----",
        "data_store": {"endpoint": "https://s3.example.com", "bucket": "b"},
    }
    assert redact(metadata) == (metadata, [])


# --- warning ---------------------------------------------------------------------


def test_warning_names_the_pointers() -> None:
    assert warning([]) is None
    text = warning(["/a/password", "/b"], source="model.yaml")
    assert text == (
        "warning: model.yaml: redacted 2 secret-looking values before signing: /a/password, /b "
        "(keep one on purpose with --allow-secret POINTER)"
    )
    assert "1 secret-looking value " in (warning(["/x"]) or "")
