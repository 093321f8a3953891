"""Secrets never reach a signed payload (issue #14 item 5): every placement a pipeline
author has been seen to use, fed through a metadata file or ``--set``, is attested for
real; the envelope file is decoded and grepped for the secret's bytes.

Attacker: a stage's runner (or a careless author) whose metadata carries a credential.
The signed payload is permanent and widely copied, so one leak is forever. Each row
below is a placement; the reviewer's variations go in the same table.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from mlspec_attest.cli.main import main
from mlspec_attest.keys import generate


def _der_b64(key: Any, fmt: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8) -> str:
    der = key.private_bytes(serialization.Encoding.DER, fmt, serialization.NoEncryption())
    return base64.b64encode(der).decode()


ED25519_B64 = _der_b64(ed25519.Ed25519PrivateKey.generate())
EC_SEC1_B64 = _der_b64(ec.generate_private_key(ec.SECP256R1()), serialization.PrivateFormat.TraditionalOpenSSL)
RSA_B64 = _der_b64(rsa.generate_private_key(public_exponent=65537, key_size=1024))
ED25519_ENCRYPTED_B64 = base64.b64encode(ed25519.Ed25519PrivateKey.generate().private_bytes(
    serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
    serialization.BestAvailableEncryption(b"pw"))).decode()
DOCKER_AUTH = base64.b64encode(b"robot:RobotPw99").decode()
DOCKER_CONFIG = base64.b64encode(json.dumps({"auths": {"r.example.io": {"auth": DOCKER_AUTH}}}).encode()).decode()
GHP = "ghp_" + "Zx81Qw72Er63Ty54Ui45Op36As27Df18Gh09"
AKIA = "AKIAZ7ND3XQ2LKWEPM4T"
HEX32 = "9f86d081884c7d659a2feaa0c55ad015"
HEX40 = HEX32 + "a2feaa0c"
HEX64 = HEX32 + "b0f00a08d3e5c2a1f6b4e9d7c8a3b2e1"
AWS_SLASHED = "wJalrXUtnFEM/K7MDENGbPxRf/CYEXAMPLEKEYab"  # two '/', every segment under 16 characters
DER_HEX = ed25519.Ed25519PrivateKey.generate().private_bytes(
    serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).hex()


@dataclass(frozen=True)
class Placement:
    name: str
    metadata: dict[str, Any] | None  # written as the --metadata file (YAML is JSON)
    sets: tuple[str, ...]
    secrets: tuple[str, ...]  # bytes that must appear nowhere in the envelope file
    pointers: tuple[str, ...]  # what predicate.redactions must list


def p(name: str, metadata: dict[str, Any] | None, secrets: tuple[str, ...], pointers: tuple[str, ...],
      sets: tuple[str, ...] = ()) -> Placement:
    return Placement(name, metadata, sets, secrets, pointers)


PLACEMENTS = [
    # --- the 22 placements of issue #14 item 5 ---
    p("k8s-env-list", {"env": [{"name": "MODE", "value": "prod"},
                               {"name": "AWS_SECRET_ACCESS_KEY", "value": "wJalrXUtnFEMIK7MDENGbPxRfiCYzEXAMPLEKEY"}]},
      ("wJalrXUtnFEMIK7MDENGbPxRfiCYzEXAMPLEKEY",), ("/env/1/value",)),
    p("key-value-string", {"environment": ["MODE=prod", "GITHUB_TOKEN=Tk_fake_7781aa"]},
      ("Tk_fake_7781aa",), ("/environment/1",)),
    p("argv-list", {"args": ["train.py", "--epochs", "3", "--db-password", "pl41nT3xt!"]},
      ("pl41nT3xt!",), ("/args/4",)),
    p("command-string-curl-u", {"command": "curl -sf -u admin:Adm1nPw7 https://artifacts.internal/upload"},
      ("Adm1nPw7",), ("/command",)),
    p("jdbc-password-param", {"jdbc": "jdbc:postgresql://db:5432/loans?user=etl&password=JdbcPw_42"},
      ("JdbcPw_42",), ("/jdbc",)),
    p("azure-sas-sig", {"blob": "https://acct.blob.core.windows.net/c/model.onnx?sv=2022-11-02&sp=r"
                                "&se=2030-01-01&sig=Qm9ndXNTaWduYXR1cmU%3D"},
      ("Qm9ndXNTaWduYXR1cmU",), ("/blob",)),
    p("url-token-param", {"source": "https://data.example.com/export.csv?format=csv&token=tkn77aa88bb"},
      ("tkn77aa88bb",), ("/source",)),
    p("authorization-bearer-in-list", {"headers": ["Accept: application/json", "Authorization: Bearer opaqueBr3r"]},
      ("opaqueBr3r",), ("/headers/1",)),
    p("base64-private-key-no-pem", {"signing": {"material": ED25519_B64}}, (ED25519_B64,), ("/signing/material",)),
    p("passcode-key", {"device": {"passcode": 918273}}, ("918273",), ("/device/passcode",)),
    p("pin-key", {"card": {"pin": "4821"}}, ('"4821"',), ("/card/pin",)),
    p("mfa-seed-key", {"mfa_seed": "JBSWY3DPEHPK3PXP"}, ("JBSWY3DPEHPK3PXP",), ("/mfa_seed",)),
    p("token-as-url-user", {"repo": "https://glpat-AbCd1234EfGh5678IjKl@gitlab.example.com/ml/repo.git"},
      ("glpat-AbCd1234EfGh5678IjKl",), ("/repo",)),
    p("docker-auth-base64", {"registries": ["docker.io", DOCKER_AUTH]}, (DOCKER_AUTH,), ("/registries/1",)),
    p("secret-as-mapping-key", {"owners": {GHP: "ci-bot"}}, (GHP,), ("/owners/[REDACTED-KEY-1]",)),
    p("password-env-literal", {"db": {"password_env": "Hunter2IsMyPw"}}, ("Hunter2IsMyPw",), ("/db/password_env",)),
    p("set-secret-key", None, ("SetTok_31337",), ("/api_token",), ("api_token=SetTok_31337", "framework=x")),
    p("set-command-value", None, ("SetPw_41",), ("/run/command",),
      ("run.command=curl -u admin:SetPw_41 https://x.example", "framework=x")),
    p("set-argv-list", None, ("SetPw_59",), ("/run/args/1",), ("run.args=[--password, SetPw_59]", "framework=x")),
    p("url-user-password", {"db": "postgres://bob:PgPw_hunter2@db.internal:5432/loans"},
      ("PgPw_hunter2",), ("/db",)),
    p("aws-access-key-id-anywhere", {"notes": f"used {AKIA} for the upload"}, (AKIA,), ("/notes",)),
    p("pem-private-key-in-text", {"readme": "key:\n-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----"},
      ("MHcCAQEE",), ("/readme",)),
    # --- variations of each class ---
    p("k8s-env-lowercase-name", {"containers": [{"env": [{"name": "db_password", "value": "EnvPw_2"}]}]},
      ("EnvPw_2",), ("/containers/0/env/0/value",)),
    p("header-name-value-pair", {"headers": [{"key": "X-Api-Key", "value": "hdrKey_9911"}]},
      ("hdrKey_9911",), ("/headers/0/value",)),
    p("key-value-inside-string", {"env_line": "MODE=prod DB_PASSWORD=Tr0ub4dor_3 REGION=eu"},
      ("Tr0ub4dor_3",), ("/env_line",)),
    p("argv-equals-form", {"args": ["serve", "--api-token=tok_9f8e7d6c"]}, ("tok_9f8e7d6c",), ("/args/1",)),
    p("command-string-quoted-password", {"cmd": "mysql --host db --password 'pw with spaces' loans"},
      ("pw with spaces",), ("/cmd",)),
    p("jdbc-semicolon-password", {"jdbc": "jdbc:sqlserver://db;databaseName=loans;user=etl;password=JdbcPw_43"},
      ("JdbcPw_43",), ("/jdbc",)),
    p("odbc-pwd", {"dsn": "Driver={ODBC};Server=db;Uid=bob;Pwd=OdbcPw_7;"}, ("OdbcPw_7",), ("/dsn",)),
    p("s3-presigned-url", {"artifact": "https://b.s3.amazonaws.com/m.onnx?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                                       "&X-Amz-Signature=5f2b0e1c9a"},
      ("5f2b0e1c9a",), ("/artifact",)),
    p("url-access-token-param", {"hook": "https://api.example.com/v1/push?access_token=atk_55x"},
      ("atk_55x",), ("/hook",)),
    p("header-string-mixed-case", {"curl": ["-H", "x-api-key: hdrKey_77aa"]}, ("hdrKey_77aa",), ("/curl/1",)),
    p("base64-ec-sec1-key", {"k": [EC_SEC1_B64]}, (EC_SEC1_B64,), ("/k/0",)),
    p("base64-rsa-key", {"k": RSA_B64}, (RSA_B64,), ("/k",)),
    p("base64-encrypted-pkcs8-key", {"k": ED25519_ENCRYPTED_B64}, (ED25519_ENCRYPTED_B64,), ("/k",)),
    p("docker-config-base64-json", {"pull": DOCKER_CONFIG}, (DOCKER_CONFIG, DOCKER_AUTH), ("/pull",)),
    p("json-inside-string", {"extra": '{"user": "u", "password": "JsonPw_1"}'}, ("JsonPw_1",), ("/extra",)),
    p("yaml-inside-string", {"config_text": "host: db\npassword: MultiPw_1\n"}, ("MultiPw_1",), ("/config_text",)),
    p("aws-key-as-mapping-key", {"by_key": {AKIA: {"owner": "ops"}}}, (AKIA,), ("/by_key/[REDACTED-KEY-1]",)),
    p("secret-key-and-pointer-escape", {"a/b": {"token": "Tok~Slash_1"}}, ("Tok~Slash_1",), ("/a~1b/token",)),
    p("token-file-that-is-a-path", {"token_file": "/run/secrets/token", "password_env": "DB_PASSWORD"}, (), ()),
    p("token-file-that-is-no-path", {"token_file": "Tok3nNotAPath"}, ("Tok3nNotAPath",), ("/token_file",)),
    p("password-file-literal", {"password_file": "P@ssw0rd!"}, ("P@ssw0rd!",), ("/password_file",)),
    p("passcode-camel", {"devicePassCode": "112233"}, ("112233",), ("/devicePassCode",)),
    p("otp-secret", {"totp": {"issuer": "corp", "seed": "GEZDGNBVGY3TQOJQ"}}, ("GEZDGNBVGY3TQOJQ",),
      ("/totp/issuer", "/totp/seed")),
    p("github-token-in-prose", {"description": f"pushed with {GHP} yesterday"}, (GHP,), ("/description",)),
    p("jwt-in-list", {"tokens_seen": ["eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJlLXZhbHVlLXg"]},
      ("c2lnbmF0dXJlLXZhbHVlLXg",), ("/tokens_seen/0",)),
    p("bearer-without-header-name", {"auth_note": ["Bearer opaque7777"]}, ("opaque7777",), ("/auth_note/0",)),
    p("basic-without-header-name", {"probe": f"Basic {DOCKER_AUTH}"}, (DOCKER_AUTH,), ("/probe",)),
    p("ecs-style-capitalised-pair", {"environment": [{"Name": "DB_PASSWORD", "Value": "EcsPw_8"}]},
      ("EcsPw_8",), ("/environment/0/Value",)),
    p("parameter-default", {"params": [{"name": "api_key", "default": "dflt_key_12"}]},
      ("dflt_key_12",), ("/params/0/default",)),
    p("export-line", {"setup": "export HF_TOKEN=hfTok_0099 && python train.py"}, ("hfTok_0099",), ("/setup",)),
    p("url-encoded-userinfo", {"mirror": "https://%75ser:p%40ss99@mirror.example.com/simple"},
      ("p%40ss99",), ("/mirror",)),
    p("secret-in-key-value-key", {"flags": {"password=KeyPw_5": True}}, ("KeyPw_5",), ("/flags/[REDACTED-KEY-1]",)),
    p("argv-list-numeric-password", {"args": ["--pin", 918273, "--password", 55443322]}, ("918273", "55443322"),
      ("/args/1", "/args/3")),
    p("run-together-key-name", {"env": {"PGPASSWORD": "PgRun_1"}, "cmd": "PGPASSWORD=PgRun_2 psql -h db"},
      ("PgRun_1", "PgRun_2"), ("/cmd", "/env/PGPASSWORD")),
    p("set-token-as-url-user", None, ("ghp_" + "Q1w2E3r4T5y6U7i8O9p0A1s2D3f4G5h6J7k8",), ("/remote",),
      ("remote=https://ghp_Q1w2E3r4T5y6U7i8O9p0A1s2D3f4G5h6J7k8@github.com/o/r.git", "framework=x")),
    # --- the adversarial review (H1-H6, H10): each reproduction is a row ---
    # H1: the secret word is not the last word of the key
    p("h1-qualified-key-names", {"API_KEY_PROD": "Winter2024!xQ1", "GITHUB_TOKEN_OLD": "Winter2024!xQ2",
                                 "token2": "Winter2024!xQ3", "pwd2": "Winter2024!xQ4",
                                 "db_pass_staging": "Winter2024!xQ5", "token_b64": "Winter2024!xQ6",
                                 "api_key_raw": "Winter2024!xQ7", "access_key_value": "Winter2024!xQ8",
                                 "private_key_hex": "Winter2024!xQ9", "pswd": "Winter2024!xR1",
                                 "passwrd": "Winter2024!xR2"},
      tuple(f"Winter2024!x{s}" for s in ("Q1", "Q2", "Q3", "Q4", "Q5", "Q6", "Q7", "Q8", "Q9", "R1", "R2")),
      ("/API_KEY_PROD", "/GITHUB_TOKEN_OLD", "/access_key_value", "/api_key_raw", "/db_pass_staging",
       "/passwrd", "/private_key_hex", "/pswd", "/pwd2", "/token2", "/token_b64")),
    p("h1-env-list-qualified-name", {"env": [{"name": "HF_TOKEN_PROD", "value": "Winter2024!xQ7"}]},
      ("Winter2024!xQ7",), ("/env/0/value",)),
    p("h1-collections-of-tokens", {"api_keys": ["k1Secret_a"], "access_tokens": {"ci": "k1Secret_b"}},
      ("k1Secret_a", "k1Secret_b"), ("/access_tokens/ci", "/api_keys/0")),
    # H2: name/value pairs in other shapes
    p("h2-list-pair", {"env": [["DB_PASSWORD", "Summer2025!a"]]}, ("Summer2025!a",), ("/env/0/1",)),
    p("h2-cloudformation-parameter", {"cfn": [{"ParameterKey": "DBPassword", "ParameterValue": "Summer2025!b"}]},
      ("Summer2025!b",), ("/cfn/0/ParameterValue",)),
    p("h2-elastic-beanstalk-option", {"eb": [{"Namespace": "aws:elasticbeanstalk:application:environment",
                                              "OptionName": "DB_PASSWORD", "Value": "Summer2025!c"}]},
      ("Summer2025!c",), ("/eb/0/Value",)),
    p("h2-cli-parameters-text", {"deploy": "aws cloudformation create-stack --parameters "
                                           "ParameterKey=DBPassword,ParameterValue=Summer2025!d"},
      ("Summer2025!d",), ("/deploy",)),
    # H3: text formats
    p("h3-netrc", {"netrc": "machine api.example.com login bob password Hunt3rPw1"}, ("Hunt3rPw1",), ("/netrc",)),
    p("h3-maven-settings", {"maven": "<server><id>nexus</id><username>ci</username><password>Hunt3rPw2</password>"
                                     "</server>"}, ("Hunt3rPw2",), ("/maven",)),
    p("h3-oracle-jdbc-thin", {"oracle": "jdbc:oracle:thin:scott/Hunt3rPw3@//db.internal:1521/ORCL"},
      ("Hunt3rPw3",), ("/oracle",)),
    p("h3-sqlplus", {"sqlplus": "sqlplus scott/Hunt3rPw4@db.internal:1521/ORCL @load.sql"}, ("Hunt3rPw4",),
      ("/sqlplus",)),
    p("h3-url-password-raw-hash", {"pg": "postgresql://etl:Hunt#3rPw5@db:5432/loans"}, ("3rPw5",), ("/pg",)),
    p("h3-url-password-raw-question-slash", {"a": "mysql://etl:Hu?nt3rPw5b@db/x", "b": "redis://:Hu/nt3rPw5c@cache:6379"},
      ("nt3rPw5b", "nt3rPw5c"), ("/a", "/b")),
    p("h3-keytool", {"jks": "keytool -importkeystore -srcstorepass Hunt3rPw6 -deststorepass Hunt3rPw7 "
                            "-keypass Hunt3rPw8"}, ("Hunt3rPw6", "Hunt3rPw7", "Hunt3rPw8"), ("/jks",)),
    p("h3-keytool-argv", {"args": ["keytool", "-list", "-storepass", "Hunt3rPw9"]}, ("Hunt3rPw9",), ("/args/3",)),
    p("h3-docker-login-sqlcmd", {"a": "docker login -u ci -p DockPw_11 registry.io", "b": ["sqlcmd", "-S", "db",
                                                                                         "-P", "SqlPw_12"]},
      ("DockPw_11", "SqlPw_12"), ("/a", "/b/4")),
    # H4: hex, UUID and prefixed credentials
    p("h4-kaggle-json", {"kaggle": {"username": "bob", "key": HEX32}}, (HEX32,), ("/kaggle/key",)),
    p("h4-wandb-login", {"setup": [f"wandb login {HEX40}"]}, (HEX40,), ("/setup/0",)),
    p("h4-databricks-doctl", {"a": f"databricks configure --host https://adb.net -t dapi{HEX32}",
                              "b": f"doctl auth init -t dop_v1_{HEX64}"}, (HEX32, HEX64), ("/a", "/b")),
    p("h4-prefixed-tokens", {"shop": [f"shpat_{HEX32}", f"key-{HEX32}", f"pul-{HEX40}"]}, (HEX32, HEX40),
      ("/shop/0", "/shop/1", "/shop/2")),
    p("h4-vault-secret-id", {"vault": {"role_id": "6a174c20-f6de-a53c-74d2-6018fcceff64",
                                       "secret_id": "1b2c3d4e-aaaa-bbbb-cccc-9f86d08188aa"}},
      ("1b2c3d4e-aaaa-bbbb-cccc-9f86d08188aa",), ("/vault/secret_id",)),
    p("h4-appid-param", {"weather": f"https://api.openweathermap.org/data/2.5/weather?q=Paris&appid={HEX32}"},
      (HEX32,), ("/weather",)),
    p("h4-teams-webhook", {"notify": "https://acme.webhook.office.com/webhookb2/6a174c20-f6de-a53c-74d2-6018fcceff64"
                                     f"@6a174c20-f6de/IncomingWebhook/{HEX32}/6a174c20"}, (HEX32,), ("/notify",)),
    p("h4-hex-api-key-flag", {"args": ["serve", "--key", HEX64]}, (HEX64,), ("/args/2",)),
    p("h4-raw-private-key-hex", {"signing": {"private_key_hex": HEX64}}, (HEX64,), ("/signing/private_key_hex",)),
    p("h4-der-private-key-hex", {"material": DER_HEX}, (DER_HEX,), ("/material",)),
    # H5: literal passwords that start like a variable
    p("h5-dollar-and-angle-literals", {"env": ["PGPASSWORD=$ecretP4ss!1"],
                                       "args": ["train.py", "--db-password", "$ecretP4ss!2"],
                                       "cmd": "psql --password=<Secr3tP4ss3> -h db"},
      ("ecretP4ss!1", "ecretP4ss!2", "Secr3tP4ss3"), ("/args/2", "/cmd", "/env/0")),
    # H6: the keys under a secret-named mapping are the secrets
    p("h6-keys-under-secret-map", {"api_tokens": {HEX32: "ci-bot", "Winter2024!xQ": "alice"}},
      (HEX32, "Winter2024!xQ"), ("/api_tokens/[REDACTED-KEY-1]", "/api_tokens/[REDACTED-KEY-2]")),
    # H10: bare cloud credentials
    p("h10-aws-configure-set", {"setup": ["aws configure set aws_secret_access_key " + AWS_SLASHED]},
      (AWS_SLASHED,), ("/setup/0",)),
    p("h10-aws-secret-two-slashes-alone", {"blob": AWS_SLASHED}, (AWS_SLASHED,), ("/blob",)),
    p("h10-bare-sas-query", {"query": "sv=2022-11-02&ss=b&srt=o&sp=r&se=2030-01-01T00:00:00Z"
                                      "&sig=Qm9ndXNTaWduYXR1cmU%3D"}, ("Qm9ndXNTaWduYXR1cmU",), ("/query",)),
    p("h10-kubectl-from-literal", {"cmd": "kubectl create secret generic db --from-literal=password=K8sPw_1"},
      ("K8sPw_1",), ("/cmd",)),
    p("pem-public-armour-around-a-private-key", {"pub": "-----BEGIN PUBLIC KEY-----\n" + ED25519_B64 +
                                                 "\n-----END PUBLIC KEY-----"}, (ED25519_B64,), ("/pub",)),
]


@pytest.fixture(scope="module")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("keys")
    priv, _, _ = generate("pipeline", directory)
    return priv


def _attest(tmp_path: Path, key: Path, placement: Placement, *extra: str) -> Any:
    args = ["attest", "stage", "train", "--bundle", str(tmp_path / "bundle"), "--key", str(key)]
    if placement.metadata is not None:
        meta = tmp_path / "meta.yaml"
        meta.write_text(json.dumps({"framework": "sklearn", **placement.metadata}), encoding="utf-8")
        args += ["--metadata", str(meta)]
    for assignment in placement.sets:
        args += ["--set", assignment]
    return CliRunner().invoke(main, [*args, *extra])


def _only_file(bundle: Path) -> Path:
    files = sorted((bundle / "attestations").glob("*.json"))
    assert len(files) == 1
    return files[0]


@pytest.mark.parametrize("placement", PLACEMENTS, ids=[pl.name for pl in PLACEMENTS])
def test_secret_never_reaches_the_envelope(tmp_path: Path, signing_key: Path, placement: Placement) -> None:
    result = _attest(tmp_path, signing_key, placement)
    assert result.exit_code == 0, result.output + result.stderr
    raw = _only_file(tmp_path / "bundle").read_bytes()
    payload = base64.b64decode(json.loads(raw)["payload"])
    statement = json.loads(payload)
    assert statement["predicate"]["redactions"] == sorted(placement.pointers)
    for secret in placement.secrets:
        for where, blob in (("payload", payload), ("envelope file", raw),
                            ("output", (result.output + result.stderr).encode())):
            assert secret.encode() not in blob, f"{placement.name}: secret found in the {where}"
    # The pointers name places that exist in the signed metadata (and hold the marker).
    for pointer in placement.pointers:
        node: Any = statement["predicate"]["metadata"]
        for token in pointer[1:].split("/"):
            token = token.replace("~1", "/").replace("~0", "~")
            node = node[int(token)] if isinstance(node, list) else node[token]
        assert node == "[REDACTED]" or pointer.split("/")[-1].startswith("[REDACTED-KEY-")


REFUSABLE = [pl for pl in PLACEMENTS if pl.pointers]


@pytest.mark.parametrize("placement", REFUSABLE, ids=[pl.name for pl in REFUSABLE])
def test_fail_on_secret_refuses_with_one_line_naming_the_pointer(tmp_path: Path, signing_key: Path,
                                                                 placement: Placement) -> None:
    result = _attest(tmp_path, signing_key, placement, "--fail-on-secret")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--fail-on-secret" in lines[0]
    assert "Traceback" not in result.output + result.stderr
    for pointer in placement.pointers:
        assert pointer in lines[0]
    for secret in placement.secrets:
        assert secret not in result.output + result.stderr
    attestations = tmp_path / "bundle" / "attestations"
    assert not attestations.exists() or not any(attestations.iterdir()), "nothing may be written"


def test_fail_on_secret_respects_allow_secret(tmp_path: Path, signing_key: Path) -> None:
    placement = p("kept", {"card": {"pin": "4821"}}, (), ())
    result = _attest(tmp_path, signing_key, placement, "--fail-on-secret", "--allow-secret", "/card/pin")
    assert result.exit_code == 0, result.stderr
    statement = json.loads(base64.b64decode(json.loads(_only_file(tmp_path / "bundle").read_bytes())["payload"]))
    assert statement["predicate"]["metadata"]["card"]["pin"] == "4821"
    assert statement["predicate"]["redactions"] == []


@pytest.mark.parametrize("assignment", ["api_token=[unclosed SetLeak_1", "db.password={bad: SetLeak_1",
                                        "framework.password=SetLeak_1"])
def test_set_errors_never_quote_the_secret(tmp_path: Path, signing_key: Path, assignment: str) -> None:
    """A --set that fails (bad YAML, walking through a scalar) must not echo its secret value."""
    placement = p("bad-set", None, (), (), ("framework=x", assignment))
    result = _attest(tmp_path, signing_key, placement)
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "SetLeak_1" not in result.output + result.stderr


def test_redacted_key_pointer_never_spells_the_secret(tmp_path: Path, signing_key: Path) -> None:
    placement = p("two-secret-keys", {"m": {GHP: {"password": "x1y2z3"}, AKIA: "ops"}}, (GHP, AKIA, "x1y2z3"), ())
    result = _attest(tmp_path, signing_key, placement)
    assert result.exit_code == 0
    statement = json.loads(base64.b64decode(json.loads(_only_file(tmp_path / "bundle").read_bytes())["payload"]))
    redactions = statement["predicate"]["redactions"]
    assert len(redactions) == 3 and not any(GHP in r or AKIA in r for r in redactions)
    assert sorted(statement["predicate"]["metadata"]["m"]) == ["[REDACTED-KEY-1]", "[REDACTED-KEY-2]"]
    assert any(r.endswith("/password") for r in redactions)


def _nest(secret_json: str, layers: int) -> str:
    value = secret_json
    for _ in range(layers):
        value = base64.b64encode(value.encode()).decode()
    return value


@pytest.mark.parametrize("layers", [1, 2, 3, 5, 8])
def test_secret_under_many_layers_of_base64_is_redacted(layers: int) -> None:
    """Attack: hide the credential under more encodings than the scanner unwraps; it fails closed."""
    from mlspec_attest.attest.redaction import redact

    value = _nest('{"password": "Layered_1"}', layers)
    assert redact({"blob": value}) == ({"blob": "[REDACTED]"}, ["/blob"])


def test_fullwidth_key_names_are_normalised() -> None:
    from mlspec_attest.attest.redaction import redact

    assert redact({"ｐａｓｓｗｏｒｄ": "Fw_1"})[1] == ["/ｐａｓｓｗｏｒｄ"]


def test_python_api_fail_on_secret_covers_stage_blocks(tmp_path: Path, signing_key: Path) -> None:
    from mlspec_attest.attest.attestor import Attestor
    from mlspec_attest.errors import InputError
    from mlspec_attest.keys import load_signer

    attestor = Attestor(tmp_path / "bundle", load_signer(signing_key), base_dir=tmp_path, fail_on_secret=True)
    with pytest.raises(InputError) as exc, attestor.stage("train") as s:
        s.metadata(framework="sklearn", env=[{"name": "HF_TOKEN", "value": "hfApiTok_42"}])
    assert "/env/0/value" in str(exc.value) and "hfApiTok_42" not in str(exc.value)
    assert not (tmp_path / "bundle" / "attestations").exists() or not any((tmp_path / "bundle" / "attestations").iterdir())
    # Per call it can still be turned off, and then the value is redacted, not signed.
    att = attestor.attest("train", metadata={"framework": "sklearn", "pin": 1234}, fail_on_secret=False)
    assert att.redactions == ["/pin"] and b"1234" not in base64.b64decode(json.loads(att.path.read_bytes())["payload"])


def test_base64_of_a_url_is_not_a_docker_auth() -> None:
    from mlspec_attest.attest.redaction import redact

    value = base64.b64encode(b"https://example.com/data.csv").decode()
    assert redact({"source_b64": value}) == ({"source_b64": value}, [])


HF = "hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567"


@pytest.mark.parametrize("files,sets", [
    ({}, ("framework=sk", "hyperparameters.db_password:Hunt3rSecr3t")),  # ':' typed for '='
    ({}, (f"HF_TOKEN {HF}",)),
    ({}, ("framework=sk", "db.password= \"Hunt'3rSecr3t")),  # repr escapes the quote
    ({}, ("framework=sk", f"framework.{HF}=1")),  # a secret as a key in the path
    ({"dup.yaml": f"framework: sk\n{HF}: a\n{HF}: b\n"}, ()),
    ({"dup.json": f'{{"framework":"sk","{HF}":1,"{HF}":2}}'}, ()),
    ({"a1.yaml": f"framework: sk\n{HF}: a\n", "a2.yaml": f"framework: sk\n{HF}: b\n"}, ()),
    ({"big.yaml": f"framework: sk\n{HF}: {{x: 99999999999999999999}}\n"}, ()),
    ({"big.json": '{"framework":"sk","card":{"pin":98765432109876543210}}'}, ()),
    ({"dupsecret.yaml": "framework: sk\ndb:\n  password: Hunt3rSecr3t\n  password: Hunt3rSecr3t\n"}, ()),
], ids=["set-colon-typo", "set-space-typo", "set-quote-in-value", "set-secret-in-path", "duplicate-key-yaml",
        "duplicate-key-json", "conflict-across-files", "out-of-range-under-secret-key", "twenty-digit-pin-json",
        "duplicate-secret-key-yaml"])
def test_metadata_errors_never_spell_the_secret(tmp_path: Path, signing_key: Path, files: dict[str, str],
                                                sets: tuple[str, ...]) -> None:
    """Attacker's gain: stderr is kept by CI; an error quoting the bad input publishes the credential."""
    args = ["attest", "stage", "train", "--bundle", str(tmp_path / "bundle"), "--key", str(signing_key)]
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        args += ["--metadata", str(tmp_path / name)]
    for assignment in sets:
        args += ["--set", assignment]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for secret in (HF, "Hunt3rSecr3t", "Hunt'3rSecr3t", "Hunt\\'3rSecr3t", "9876543210", "99999999999999999999"):
        assert secret not in result.output + result.stderr
    assert "[REDACTED]" in lines[0] or "duplicate" in lines[0]
    assert not (tmp_path / "bundle" / "attestations").exists() or not any((tmp_path / "bundle" / "attestations").iterdir())


def test_sanitiser_keeps_an_ordinary_message() -> None:
    from mlspec_attest.attest.redaction import sanitise_message

    message = "m.yaml:3:1: invalid YAML: found duplicate key 'learning_rate'; fix the file and retry"
    assert sanitise_message(message) == message


@pytest.mark.parametrize("content", [b"DB_PASSWORD=Hunt3rSecr3t\n", b'{"password": "Hunt3rSecr3t"}',
                                     b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", '
                                     b'"password": "Hunt3rSecr3t"}',
                                     b'{"payloadType": "x", "payload": "SHVudDNyU2VjcjN0", "signatures": "no"}'],
                         ids=["dotenv", "json-object", "fake-sigstore-bundle", "malformed-dsse"])
def test_evidence_must_be_a_dsse_envelope_or_a_sigstore_bundle(tmp_path: Path, signing_key: Path,
                                                              content: bytes) -> None:
    """H12: '--evidence .env' copied the file (and its password) into bundle/evidence verbatim."""
    evidence = tmp_path / ".env"
    evidence.write_bytes(content)
    result = CliRunner().invoke(main, ["attest", "stage", "train", "--bundle", str(tmp_path / "bundle"), "--key",
                                       str(signing_key), "--set", "framework=sk", "--evidence", str(evidence)])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output + result.stderr
    assert "Hunt3rSecr3t" not in result.output + result.stderr
    assert not any(b"Hunt3rSecr3t" in f.read_bytes() for f in tmp_path.joinpath("bundle").rglob("*") if f.is_file())
    assert not (tmp_path / "bundle" / "evidence").exists()


def test_dsse_envelope_evidence_is_still_attached(tmp_path: Path, signing_key: Path) -> None:
    first = CliRunner().invoke(main, ["attest", "stage", "train", "--bundle", str(tmp_path / "other"), "--key",
                                      str(signing_key), "--set", "framework=sk"])
    assert first.exit_code == 0, first.stderr
    envelope = _only_file(tmp_path / "other")
    result = CliRunner().invoke(main, ["attest", "stage", "train", "--bundle", str(tmp_path / "bundle"), "--key",
                                       str(signing_key), "--set", "framework=sk", "--evidence", str(envelope)])
    assert result.exit_code == 0, result.stderr
    assert [f.read_bytes() for f in (tmp_path / "bundle" / "evidence").iterdir()] == [envelope.read_bytes()]


# Each regex's worst case: runs of the characters it repeats, with the delimiter it anchors on.
PATHOLOGICAL = {"url-scheme": "a-" * 200_000, "url-dots": "a." * 200_000, "scheme-separators": "://" * 150_000,
                "assignments": "a=" * 200_000, "userinfo": "a:b@" * 100_000, "oracle": "sqlplus " + "a/b@c " * 60_000,
                "xml": "<a>" * 150_000, "netrc": "login " * 60_000, "query": "&a=" * 150_000,
                "camel-case-key": "A" * 400_000, "bearer-spaces": "bearer" + " " * 400_000,
                "urls": "http://a" * 50_000, "pem": "-----BEGIN A " * 40_000, "dollars": "$a" * 200_000}


@pytest.mark.parametrize("value", list(PATHOLOGICAL.values()), ids=list(PATHOLOGICAL))
def test_no_regex_backtracks_quadratically(value: str) -> None:
    """H11: a 400 KB 'a-a-a-' string kept the URL regex busy for minutes. A hang guard, not a timing
    assertion: linear work takes a few seconds; the old quadratic regex took ~30 minutes here."""
    import time

    from mlspec_attest.attest.redaction import scan

    started = time.monotonic()
    scan({"v": value, value[:4096]: 1})
    assert time.monotonic() - started < 60


def test_multi_megabyte_value_is_scanned_in_bounded_time() -> None:
    import time

    from mlspec_attest.attest.redaction import redact

    value = ("a-" * 600_000) + f" token={HF} " + ("a." * 600_000)
    started = time.monotonic()
    clean, pointers = redact({"notes": value})
    assert pointers == ["/notes"] and clean == {"notes": "[REDACTED]"}
    assert time.monotonic() - started < 180
