"""Reading stack files: every file-level mistake is one ``file: field: message`` line.

Classes from issue 14: bytes that are not UTF-8 text, nesting, duplicate keys, YAML errors
located where the construct starts, stack names, plaintext secrets, and one read per file.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest

from gpu_fleet.components import config as config_module
from gpu_fleet.components import yaml_reader
from gpu_fleet.components.config import ConfigError, load_stack_file, read_stack_file, reading_once

REPO = Path(__file__).resolve().parents[2]
US_EAST = (REPO / "stacks" / "Pulumi.us-east.yaml").read_text()


def _error(tmp_path: Path, content: bytes | str, name: str = "Pulumi.demo.yaml") -> str:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    with pytest.raises(ConfigError) as exc:
        load_stack_file(path)
    message = str(exc.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message.removeprefix(f"{path}: ")


# --------------------------------------------------------------------------- bytes that are not UTF-8 YAML

def test_latin1_comment_names_the_line_and_the_fix(tmp_path):
    text = US_EAST.replace("# US-East region stack", "# US-East région stack", 1).encode("latin-1")
    assert _error(tmp_path, text) == ("config: cannot read: line 1: byte 0xe9 (column 12) is not UTF-8; save the file "
                                      "as UTF-8 (an editor may have saved it as Latin-1 or Windows-1252)")


def test_windows_1252_quote_deep_in_the_file(tmp_path):
    text = US_EAST.encode().replace(b"models:", b"models: # the \x93best\x94 ones", 1)
    line = US_EAST[:US_EAST.index("models:")].count("\n") + 1
    assert _error(tmp_path, text).startswith(f"config: cannot read: line {line}: byte 0x93 ")


def test_gzip_file_says_decompress(tmp_path):
    assert _error(tmp_path, gzip.compress(US_EAST.encode())) == (
        "config: cannot read: this is a gzip-compressed file, not YAML text; decompress it (gunzip) first")


def test_binary_file(tmp_path):
    assert _error(tmp_path, b"\x7fELF\x02\x01\x01\x00" + bytes(range(256))) == (
        "config: cannot read: this is a binary file, not YAML text")


def test_utf8_bom_and_utf16_are_read_like_pulumi_does(tmp_path):
    for i, data in enumerate([b"\xef\xbb\xbf" + US_EAST.encode(), US_EAST.encode("utf-16")]):
        path = tmp_path / f"Pulumi.s{i}.yaml"
        path.write_bytes(data)
        assert load_stack_file(path).location == "us-east-1"


def test_control_character_is_located(tmp_path):
    assert _error(tmp_path, "config:\n  a: b\x07\n") == (
        "config: cannot read: line 2: character U+0007 is not allowed in YAML (control characters are not allowed)")


# --------------------------------------------------------------------------- nesting and aliases

def test_deep_flow_nesting_is_refused_without_recursion_error(tmp_path):
    assert _error(tmp_path, "config:\n  x: " + "[" * 900 + "]" * 900 + "\n") == (
        f"config: cannot read: line 2: nested more than {yaml_reader.MAX_DEPTH} levels deep here (or an alias that "
        "refers to the value containing it); a stack's config needs a handful")


def test_deep_block_nesting_is_refused(tmp_path):
    text = "config:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(200)) + "  " * 201 + "v: 1\n"
    assert "nested more than" in _error(tmp_path, text)


def test_libyaml_nesting_limit_is_a_config_error(tmp_path):
    assert "maximum nesting depth" in _error(tmp_path, "config:\n  x: " + "[" * 5000 + "\n")


def test_billion_laughs_and_self_reference(tmp_path):
    rows = ["config:", "  a: &a [x, x, x, x, x, x, x, x, x, x]"]
    rows += [f"  b{i}: &b{i} [{', '.join(['*a' if i == 0 else f'*b{i - 1}'] * 10)}]" for i in range(8)]
    assert "expands to more than" in _error(tmp_path, "\n".join(rows) + "\n")
    assert _error(tmp_path, "config:\n  a: &a [*a]\n") == (
        "config: cannot read: line 2: nested more than 64 levels deep here (or an alias that refers to the value "
        "containing it); a stack's config needs a handful")


# --------------------------------------------------------------------------- duplicate keys

def test_second_models_key_is_rejected_like_pulumi_does(tmp_path):
    text = US_EAST.replace("    cache:", "    models: []\n    cache:", 1)
    first = US_EAST[:US_EAST.index("    models:")].count("\n") + 1
    again = US_EAST[:US_EAST.index("    cache:")].count("\n") + 1
    assert _error(tmp_path, text) == (
        f"config.gpu-fleet:fleet.models: cannot read: line {again}: key 'models' is given twice (first on line "
        f"{first}); Pulumi's YAML parser rejects duplicate keys: merge the two")


def test_duplicate_key_in_a_list_item(tmp_path):
    text = US_EAST.replace("        gpusPerNode: 8            # p5.48xlarge",
                           "        gpusPerNode: 8\n        gpusPerNode: 4", 1)
    assert _error(tmp_path, text).startswith("config.gpu-fleet:fleet.gpuPools[0].gpusPerNode: cannot read: line ")


def test_merge_keys_may_be_overridden(tmp_path):
    path = tmp_path / "Pulumi.demo.yaml"
    path.write_text("config:\n  base: &b {a: 1, b: 2}\n  derived:\n    <<: *b\n    a: 3\n")
    assert read_stack_file(path).config["derived"] == {"a": 3, "b": 2}


# --------------------------------------------------------------------------- where a YAML error starts

def test_unterminated_quote_points_at_its_start(tmp_path):
    text = US_EAST.replace("certificate: arn:", 'certificate: "arn:', 1) + "\n" * 30
    line = US_EAST[:US_EAST.index("certificate: arn:")].count("\n") + 1
    message = _error(tmp_path, text)
    assert message.startswith(f"config: cannot read: line {line}: while scanning a quoted scalar: ")
    assert message.endswith(f"(line {US_EAST.count(chr(10)) + 31})")  # where the parser gave up


def test_unclosed_flow_list_points_at_its_start(tmp_path):
    text = US_EAST.replace("publicAccessCidrs: [203.0.113.0/24]", "publicAccessCidrs: [203.0.113.0/24", 1)
    line = US_EAST[:US_EAST.index("publicAccessCidrs:")].count("\n") + 1
    assert _error(tmp_path, text).startswith(f"config: cannot read: line {line}: while parsing a flow sequence: ")


def test_timestamps_stay_strings_and_binary_tags_are_refused(tmp_path):
    path = tmp_path / "Pulumi.demo.yaml"
    path.write_text("config:\n  a: 2025-01-01\n")
    assert read_stack_file(path).config["a"] == "2025-01-01"
    assert _error(tmp_path, "config:\n  a: !!binary aGVsbG8=\n").startswith(
        "config: cannot read: line 2: tag !!binary is not a Pulumi config type")


# --------------------------------------------------------------------------- stack file names

@pytest.mark.parametrize("name", ["Pulumi...yaml", "Pulumi....yaml"])
def test_dot_stack_names_are_never_accepted(tmp_path, name):
    assert _error(tmp_path, US_EAST, name).startswith(f"stack: {name[7:-5]!r} is not a Pulumi stack name")


@pytest.mark.parametrize("name,words", [
    ("stack.yaml", "a stack file is named Pulumi.<stack>.yaml"),
    ("Pulumi.us-east.yml", "a stack file is named Pulumi.<stack>.yaml"),
    ("Pulumi.us east.yaml", "is not a Pulumi stack name"),
    ("Pulumi.us.east.yaml", "Pulumi accepts it, but the stack name prefixes EKS"),
    ("Pulumi.US-East.yaml", "Pulumi accepts it"),
    ("Pulumi." + "a" * 41 + ".yaml", "Pulumi accepts it"),
])
def test_stack_names_pulumi_or_the_clouds_reject(tmp_path, name, words):
    assert words in _error(tmp_path, US_EAST, name)


# --------------------------------------------------------------------------- plaintext secrets

@pytest.mark.parametrize("key", ["apiKey", "huggingFaceToken"])
def test_plaintext_secret_config_value(tmp_path, key):
    text = US_EAST.replace("config:\n", f"config:\n  gpu-fleet:{key}: s3cr3t\n", 1)
    assert _error(tmp_path, text) == (f"gpu-fleet:{key}: a plaintext secret in the stack file (pulumi up would use "
                                      f"it as is); delete the line and run: pulumi config set --secret "
                                      f"gpu-fleet:{key} <value>")


def test_encrypted_secrets_are_fine(tmp_path):
    path = tmp_path / "Pulumi.demo.yaml"
    path.write_text(US_EAST.replace("config:\n", "config:\n  gpu-fleet:apiKey:\n    secure: AAABAK1x\n", 1))
    assert read_stack_file(path).secret_keys == {"gpu-fleet:apiKey"}


@pytest.mark.parametrize("line,field,key", [
    ("    huggingFaceToken: hf_x", "fleet.huggingFaceToken", "huggingFaceToken"),
    ("    api_key: abc", "fleet.api_key", "apiKey"),
])
def test_token_under_the_fleet_key(tmp_path, line, field, key):
    text = US_EAST.replace("    cache:", f"{line}\n    cache:", 1)
    assert _error(tmp_path, text) == (f"{field}: secrets do not belong in gpu-fleet:fleet (stored in plaintext); "
                                      f"delete it and run: pulumi config set --secret gpu-fleet:{key} <value>")


def test_hugging_face_token_pasted_into_a_value(tmp_path):
    text = US_EAST.replace("revision: 1605565b47bb9346c5515c34102e054115b4f98b",
                           "revision: hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789", 1)
    assert _error(tmp_path, text).startswith("fleet.models[0].revision: holds what looks like a Hugging Face token")


# --------------------------------------------------------------------------- one read per file

def test_each_file_is_read_once_per_plan(monkeypatch):
    reads: list[Path] = []
    real = yaml_reader.read

    def counting(path):
        reads.append(path)
        return real(path)

    monkeypatch.setattr(yaml_reader, "read", counting)
    with reading_once():
        for _ in range(3):
            load_stack_file(REPO / "stacks" / "Pulumi.global.yaml")  # reads both region stacks too
            read_stack_file(REPO / "stacks" / "Pulumi.us-east.yaml")
    assert sorted(p.name for p in reads) == ["Pulumi.eu-west.yaml", "Pulumi.global.yaml", "Pulumi.us-east.yaml"]
    reads.clear()
    load_stack_file(REPO / "stacks" / "Pulumi.us-east.yaml")
    load_stack_file(REPO / "stacks" / "Pulumi.us-east.yaml")
    assert len(reads) == 2  # outside a plan every call reads the file afresh
    assert config_module._READ_CACHE is None


def test_c_loader_is_used():
    import yaml

    assert yaml.__with_libyaml__ and issubclass(yaml_reader._Loader, yaml.CSafeLoader)


# --------------------------------------------------------------------------- plaintext secrets under pulumi up

@pytest.mark.parametrize("secret_keys,fails", [((), True), (("gpu-fleet:apiKey", "gpu-fleet:huggingFaceToken"), False)])
def test_program_refuses_secrets_pulumi_holds_in_plaintext(fleet, secret_keys, fails):
    import pulumi

    from gpu_fleet.components import program

    config = {"gpu-fleet:apiKey": "k", "gpu-fleet:huggingFaceToken": "t"}
    outcome: list[str] = []

    def run() -> None:
        try:
            program.check_secrets("region")
            outcome.append("ok")
        except pulumi.RunError as e:
            outcome.append(str(e))

    fleet.run(run, stack="us-east", config=config, secret_keys=secret_keys)
    if fails:
        assert outcome == ["stacks/Pulumi.us-east.yaml: gpu-fleet:huggingFaceToken: set in plaintext; run: pulumi "
                           "config set --secret gpu-fleet:huggingFaceToken <value>"]
    else:
        assert outcome == ["ok"]


# --------------------------------------------------------------------------- numbers Pulumi cannot pass


def test_an_integer_beyond_a_double_is_a_config_error_not_an_overflow(tmp_path):
    text = US_EAST.replace("maxNodes: 20", "maxNodes: 1" + "0" * 400, 1)
    line = US_EAST[:US_EAST.index("maxNodes: 20")].count("\n") + 1
    assert _error(tmp_path, text) == (f"config.gpu-fleet:fleet.gpuPools[0].maxNodes: cannot read: line {line}: "
                                      f"1{'0' * 29}... is beyond what Pulumi passes exactly (numbers travel as "
                                      "doubles: at most 9,007,199,254,740,992 either side of 0)")


def test_integers_up_to_two_to_the_53_are_read_in_any_notation():
    assert yaml_reader.parse(f"a: {2**53}\nb: -{2**53}\nc: 0x1F\n") == {"a": 2**53, "b": -(2**53), "c": 31}
    for big in (str(2**53 + 1), f"-{2**53 + 1}", "0x" + "f" * 14, "9_007_199_254_740_993"):
        with pytest.raises(yaml_reader.YamlError, match=r"^line 2: .* is beyond what Pulumi passes exactly"):
            yaml_reader.parse(f"x: 1\nlist: [{big}]\n")


# --------------------------------------------------------------------------- what reading costs


def test_validating_the_reference_stacks_imports_no_pulumi():
    # gpu-fleet plan reports a stack file's mistakes before the provider SDKs are imported
    # (most of a second); benchmarks/stack_file_bench.py times it.
    code = ("import sys; from gpu_fleet.components.config import load_stack_file\n"
            "for s in ('us-east', 'eu-west', 'global'): load_stack_file(f'stacks/Pulumi.{s}.yaml')\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pulumi', 'pulumi_aws', 'pulumi_gcp', "
            "'pulumi_kubernetes', 'numba')))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


def test_a_field_path_with_control_characters_stays_one_line(tmp_path):
    text = '"a\\x0cb":\n  c: 9007199254740993\n'
    with pytest.raises(yaml_reader.YamlError) as raised:
        yaml_reader.parse(text)
    assert raised.value.path == "'a\\x0cb'.c" and "\n" not in raised.value.path
    assert len(_error(tmp_path, "config:\n  x:y:\n    \"a\\u2028b\": 1\n    \"a\\u2028b\": 2\n").splitlines()) == 1


@pytest.mark.parametrize("kind", ["{}", "[region]"])
def test_a_kind_that_is_not_a_string_is_a_config_error(tmp_path, kind):
    text = US_EAST.replace("kind: region", f"kind: {kind}", 1)
    assert _error(tmp_path, text).startswith("kind: must be one of: region, global; got ")


@pytest.mark.parametrize("key", ["\\x1b!\\x0c", "a\\u2028b"])
def test_unknown_keys_with_control_characters_give_one_line(tmp_path, key):
    text = US_EAST.replace("kind: region", f'kind: region\n    "{key}": 1', 1)
    message = _error(tmp_path, text)  # one line, asserted by _error
    assert message.startswith("'") and "unknown key" in message
