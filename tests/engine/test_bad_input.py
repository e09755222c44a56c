"""Bad input: each gets a precise, named error (exit 2 from the CLI), never a traceback."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from jaxport.archive import ArchiveLimits, extract_archive, inspect_archive
from jaxport.errors import (ArchiveError, ArchiveTooLarge, JaxportError, ManifestError,
                            ModelLoadError, ShapeError)
from jaxport.manifest import parse_manifest
from jaxport.options import ConvertOptions, OptionsError
from jaxport.specs import parse_spec
from tests import zoo

GOOD = zoo.SET_MANIFEST


def _manifest_error(text: str) -> str:
    with pytest.raises(ManifestError) as info:
        parse_manifest(text)
    return str(info.value) + " | " + info.value.hint


@pytest.mark.parametrize("edit, expected", [
    (("format = 1", "format = 2"), "format = 2 is not supported"),
    (('call = "head"', 'call = "heed"'), "call = 'heed' names no model"),
    (('op   = "mean"', 'op = "exec"'), "op = 'exec' is not a whitelisted op"),
    (('args = ["emb"]', 'args = ["nope"]'), "args refers to 'nope'"),
    (("axis = 1", "axes = 1"), "op 'mean' has no parameter 'axes'"),
    (('outputs = { score = "score" }', 'outputs = { score = "scor" }'), "outputs.score refers to 'scor'"),
    (('"f32[b,4,16,16,3]"', '"f33[b,4]"'), "unknown dtype 'f33'"),
    (('in_axes = [1]', 'in_axes = [1, 2]'), "in_axes must be an int or a list of 1"),
    (("[models]", "[modles]"), "unknown top-level key(s) ['modles']"),
])
def test_manifest_errors_name_the_field(edit: tuple[str, str], expected: str) -> None:
    assert edit[0] in GOOD
    message = _manifest_error(GOOD.replace(edit[0], edit[1], 1))
    assert expected in message
    assert "jaxport.toml" in message


def test_manifest_not_toml() -> None:
    assert "not valid TOML" in _manifest_error("format = = 1")


def test_spec_parsing() -> None:
    spec = parse_spec("x", "f32[b, s, 3]")
    assert spec.shape == ("b", "s", 3) and spec.tf_shape == [None, None, 3]
    with pytest.raises(ManifestError, match="neither an int nor a symbol"):
        parse_spec("x", "f32[b,3.5]")


def test_options_reject_unknown_keys_and_values() -> None:
    with pytest.raises(OptionsError, match="unknown option"):
        ConvertOptions.from_json({"targets": ["tflite"], "trusted": True})
    with pytest.raises(OptionsError, match="unknown target"):
        ConvertOptions.from_json({"targets": "tflite,coreml"})
    assert ConvertOptions.from_json({"targets": "tflite,onnx"}).targets == ["tflite", "onnx"]


def test_not_an_archive(tmp_path: Path) -> None:
    path = tmp_path / "model.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(ArchiveError, match="neither a .keras file nor a .zip or .tar.gz"):
        inspect_archive(path)


def test_zip_without_manifest(tmp_path: Path) -> None:
    path = zoo.make_zip(tmp_path / "a.zip", {"readme.txt": b"hi"})
    with pytest.raises(ArchiveError, match="holds no jaxport.toml"):
        inspect_archive(path)


def test_manifest_names_a_missing_file(tmp_path: Path) -> None:
    path = zoo.make_zip(tmp_path / "a.zip", {"jaxport.toml": GOOD.encode(),
                                             "embed.keras": b"x"})
    with pytest.raises(ManifestError, match="models.head = 'head.keras', but the archive has no"):
        inspect_archive(path)


def test_zip_bomb_refused_before_inflating(tmp_path: Path) -> None:
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("jaxport.toml", GOOD)
        zf.writestr("embed.keras", b"\0" * (64 << 20))
    assert path.stat().st_size < 1 << 20
    with pytest.raises(ArchiveError, match="likely zip bomb"):
        inspect_archive(path)


def test_bzip2_member_refused(tmp_path: Path) -> None:
    path = tmp_path / "bz.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_BZIP2) as zf:
        zf.writestr("jaxport.toml", GOOD)
    with pytest.raises(ArchiveError, match="compression method 12"):
        inspect_archive(path)


def test_unpacked_size_limit(tmp_path: Path) -> None:
    path = zoo.make_zip(tmp_path / "a.zip", {"jaxport.toml": GOOD.encode(), "x": b"1" * 5000})
    with pytest.raises(ArchiveTooLarge):
        inspect_archive(path, ArchiveLimits(max_unpacked_bytes=4000))


def test_path_traversal_refused(tmp_path: Path) -> None:
    path = zoo.make_zip(tmp_path / "a.zip", {"jaxport.toml": GOOD.encode(), "../evil": b"x"})
    with pytest.raises(ArchiveError, match="unsafe path"):
        inspect_archive(path)


def test_tar_symlink_refused(tmp_path: Path) -> None:
    link = tarfile.TarInfo("embed.keras")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    path = zoo.make_targz(tmp_path / "a.tar.gz", [], entries=(link,))
    with pytest.raises(ArchiveError, match="link or special file"):
        inspect_archive(path)


def test_truncated_targz(tmp_path: Path) -> None:
    good = zoo.make_targz(tmp_path / "g.tar.gz", {"jaxport.toml": GOOD.encode() * 50})
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(good.read_bytes()[:60])
    with pytest.raises(ArchiveError, match="not a readable .tar.gz"):
        inspect_archive(bad)


def test_corrupt_keras_inside_archive(tmp_path: Path) -> None:
    path = zoo.make_zip(tmp_path / "a.zip", {"jaxport.toml": GOOD.encode(),
                                             "embed.keras": b"not a zip", "head.keras": b"x"})
    with pytest.raises(ArchiveError, match="embed.keras: is not a Keras 3 .keras file"):
        extract_archive(path, tmp_path / "x")


def test_lambda_layer_refused_under_safe_mode(tmp_path: Path) -> None:
    from jaxport.archive import extract_archive
    from jaxport.compose import load_program

    path = zoo.save(zoo.lambda_model(), tmp_path / "lam.keras")
    with pytest.raises(ModelLoadError, match="refused under safe mode") as info:
        load_program(extract_archive(path, tmp_path / "x"), trusted=False)
    assert "JAXPORT_ALLOW_TRUSTED_CODE" in info.value.hint
    program = load_program(extract_archive(path, tmp_path / "y"), trusted=True)
    assert program.functions["serving_default"].output_specs[0].shape == ("b", 3)


def test_shape_that_does_not_fit(tmp_path: Path) -> None:
    from jaxport.compose import load_program

    embed = zoo.save(zoo.small_cnn(), tmp_path / "embed.keras")
    head = zoo.save(zoo.dense_head(features=5), tmp_path / "head.keras")  # cnn gives 8
    path = zoo.make_zip(tmp_path / "a.zip", {"jaxport.toml": GOOD.encode(),
                                             "embed.keras": embed, "head.keras": head})
    with pytest.raises(ShapeError, match="does not trace with inputs images=f32"):
        load_program(extract_archive(path, tmp_path / "x"), trusted=False)


def test_cli_bad_archive_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04garbage")
    proc = subprocess.run([sys.executable, "-m", "jaxport.cli", "convert", str(bad), "-o",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert errors == ["error: bad.zip: not a readable zip file: File is not a zip file"]
    assert "Traceback" not in proc.stderr


def test_every_error_is_a_named_jaxport_error() -> None:
    for cls in (ArchiveError, ManifestError, ModelLoadError, ShapeError, OptionsError):
        assert issubclass(cls, JaxportError) and 400 <= cls.http_status < 500


# --- hostile archives: every one is an ArchiveError naming the member, before extraction ----------

STAND_INS = {"embed.keras": b"x", "head.keras": b"x"}  # inspect_archive does not open models


def _zip_with_bad_crc(path: Path, member: str) -> Path:
    """The set archive, stored (not deflated), with one byte of `member`'s data flipped."""
    payload = {"jaxport.toml": GOOD.encode(), "embed.keras": b"E" * 64, "head.keras": b"H" * 64}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in payload.items():
            zf.writestr(name, data)
    data = path.read_bytes()
    at = data.index(payload[member]) + 10
    path.write_bytes(data[:at] + bytes([data[at] ^ 1]) + data[at + 1:])
    return path


def test_bad_crc_of_manifest_refused_by_inspection(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="member 'jaxport.toml'.*CRC"):
        inspect_archive(_zip_with_bad_crc(tmp_path / "a.zip", "jaxport.toml"))


def test_bad_crc_of_model_refused_by_extraction(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="member 'embed.keras'.*CRC"):
        extract_archive(_zip_with_bad_crc(tmp_path / "a.zip", "embed.keras"), tmp_path / "x")


def test_encrypted_member_refused(tmp_path: Path) -> None:
    path = zoo.make_zip(tmp_path / "enc.zip", {"jaxport.toml": GOOD.encode(), **STAND_INS})
    path.write_bytes(zoo.flag_encrypted(path.read_bytes(), "embed.keras"))
    with pytest.raises(ArchiveError, match="member 'embed.keras' is encrypted"):
        inspect_archive(path)


def _zip_of(path: Path, names: list[str]) -> Path:
    """A zip holding GOOD's files plus `names` (ending in / = a folder entry), duplicates kept."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns on a duplicate name
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in {"jaxport.toml": GOOD.encode(), **STAND_INS}.items():
                zf.writestr(name, data)
            for name in names:
                data = GOOD if name == "jaxport.toml" else b"" if name.endswith("/") else b"x"
                zf.writestr(name, data)
    return path


@pytest.mark.parametrize("names, expected", [
    (["jaxport.toml"], "'jaxport.toml' and 'jaxport.toml' are the same path"),
    (["m.keras", "m.keras/x"], "'m.keras' is a file and a folder"),
    (["m.keras/x", "m.keras"], "'m.keras' is a file and a folder"),
    (["a/b", "a//b"], "'a/b' and 'a//b' are the same path"),
    (["./embed.keras"], "'embed.keras' and './embed.keras' are the same path"),
    (["sub/"], None),  # a folder entry alone is fine
    (["sub/", "sub//"], "'sub/' and 'sub//' are the same path"),
    (["sub/.."], "'sub/..' has an unsafe path"),
    (["a/../head.keras"], "'a/../head.keras' has an unsafe path"),
])
def test_colliding_member_names_refused(tmp_path: Path, names: list[str], expected: str | None) -> None:
    path = _zip_of(tmp_path / "a.zip", names)
    if expected is None:
        assert "embed.keras" in inspect_archive(path).members
        return
    with pytest.raises(ArchiveError, match=re.escape(expected)):
        inspect_archive(path)


def test_tar_with_a_name_twice_refused(tmp_path: Path) -> None:
    path = zoo.make_targz(tmp_path / "a.tar.gz", [("jaxport.toml", GOOD.encode()),
                                                   *STAND_INS.items(), ("embed.keras", b"y")])
    with pytest.raises(ArchiveError, match="'embed.keras' and 'embed.keras' are the same path"):
        inspect_archive(path)


def test_targz_from_tar_dot_still_accepted(tmp_path: Path) -> None:
    """`tar czf set.tar.gz -C dir .` names members ./jaxport.toml and lists ./ first."""
    root = tarfile.TarInfo("./")
    root.type = tarfile.DIRTYPE
    files = [("./" + name, data) for name, data in {"jaxport.toml": GOOD.encode(), **STAND_INS}.items()]
    path = zoo.make_targz(tmp_path / "dot.tar.gz", files, entries=(root,))
    assert sorted(inspect_archive(path).members) == ["embed.keras", "head.keras", "jaxport.toml"]


def test_targz_bomb_refused_before_inflating(tmp_path: Path) -> None:
    path = zoo.make_targz(tmp_path / "bomb.tar.gz", {"jaxport.toml": GOOD.encode(),
                                                     "embed.keras": b"\0" * (64 << 20),
                                                     "head.keras": b"x"})
    assert path.stat().st_size < 1 << 20
    with pytest.raises(ArchiveError, match="member 'embed.keras' inflates .* likely zip bomb"):
        inspect_archive(path)


def test_targz_bomb_stopped_while_extracting(tmp_path: Path, monkeypatch) -> None:
    """Extraction checks the ratio as it streams, so a bomb stops after a few MiB on disk."""
    import jaxport.archive as archive

    path = zoo.make_targz(tmp_path / "bomb.tar.gz", {"jaxport.toml": GOOD.encode(), **STAND_INS,
                                                     "pad.bin": b"\0" * (64 << 20)})
    monkeypatch.setattr(archive, "inspect_archive", lambda p, limits: archive.ArchiveInfo(
        "tar.gz", parse_manifest(GOOD), ["jaxport.toml", *STAND_INS]))
    with pytest.raises(ArchiveError, match="member 'pad.bin' inflates"):
        extract_archive(path, tmp_path / "x")
    assert (tmp_path / "x" / "pad.bin").stat().st_size <= 4 << 20


def test_cli_corrupt_member_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = _zip_with_bad_crc(tmp_path / "set.zip", "embed.keras")
    proc = subprocess.run([sys.executable, "-m", "jaxport.cli", "convert", str(bad), "-o",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "member 'embed.keras'" in errors[0], proc.stderr
    assert "hint: " in proc.stderr and "Traceback" not in proc.stderr


# --- manifests and shapes that would cost minutes or gigabytes -----------------------------------

def _op_steps(n: int) -> str:
    """GOOD with `n` extra op steps on the pooled value."""
    step = '\n[[functions.serving_default.steps]]\nbind = "pooled"\nop = "tanh"\nargs = ["pooled"]\n'
    head = GOOD.index("[[functions.serving_default.steps]]\nbind = \"score\"")
    return GOOD[:head] + step.lstrip("\n") * n + GOOD[head:]


@pytest.mark.parametrize("text, expected", [
    ("format = 1\nx = " + "[" * 5000 + "]" * 5000, "nested deeper than 16 (MAX_NESTING_DEPTH)"),
    ("format = 1\nx = " + "[" * 40 + "]" * 40, "nested deeper than 16 (MAX_NESTING_DEPTH)"),
    ("format = 1\n" + "a." * 5000 + "b = 1\n", "line 2 has 5000 dots"),
    ("format = 1\n[" + "a." * 5000 + "b]\n", "line 2 has 5000 dots"),
    (_op_steps(2000), "2003 steps, over the limit of 100 (MAX_STEPS_PER_FUNCTION)"),
    (GOOD.replace('inputs  = { images = "f32[b,4,16,16,3]" }', "inputs = { "
                  + ", ".join(f'x{i} = "f32[b]"' for i in range(40)) + " }"),
     "40 inputs, over the limit of 32 (MAX_INPUTS_PER_FUNCTION)"),
    (GOOD.replace('head  = "head.keras"', "\n".join(f'm{i} = "m{i}.keras"' for i in range(40))),
     "41 models, over the limit of 32 (MAX_MODELS)"),
    (GOOD + "".join(GOOD[GOOD.index("[functions"):].replace("serving_default", f"f{i}")
                    for i in range(20)), "21 functions, over the limit of 16 (MAX_FUNCTIONS)"),
])
def test_manifest_size_limits(text: str, expected: str) -> None:
    message = _manifest_error(text)
    assert expected in message, message
    assert "jaxport.toml" in message and not message.endswith(" | ")  # a hint is given


def test_limits_leave_a_realistic_manifest_alone() -> None:
    assert len(parse_manifest(_op_steps(90)).functions["serving_default"].steps) == 93


@pytest.mark.parametrize("text, expected", [
    ("f32[b,1000000000]", "1000000000 elements, over the limit of 16777216 (MAX_INPUT_ELEMENTS)"),
    ("f32[b,8192,8192,3]", "201326592 elements, over the limit"),
    ("f32[b,0,3]", "dimension 0"),
])
def test_declared_shape_limits(text: str, expected: str) -> None:
    with pytest.raises(ShapeError, match=re.escape(expected)) as info:
        parse_spec("x", text, where="jaxport.toml: functions.f.inputs")
    assert "input 'x'" in str(info.value) and info.value.hint


def test_symbolic_dims_do_not_count_towards_the_element_cap() -> None:
    assert parse_spec("x", "f32[b,s,t,4096,4096]").shape[3:] == (4096, 4096)


def _bare_keras(tmp_path: Path, shape: tuple, dtype: str) -> Path:
    x = zoo.keras.Input(shape, dtype=dtype, name="x")
    return zoo.save(zoo.keras.Model(x, zoo.keras.layers.Identity()(x)), tmp_path / "m.keras")


@pytest.mark.parametrize("dtype", ["float64", "uint64"])
def test_keras_input_of_unsupported_dtype(tmp_path: Path, dtype: str) -> None:
    from jaxport.compose import load_program

    path = _bare_keras(tmp_path, (4,), dtype)
    with pytest.raises(ModelLoadError, match=f"input 'x' has dtype {dtype}") as info:
        load_program(extract_archive(path, tmp_path / "x"), trusted=False)
    assert "float32, float16, bfloat16, int8, int16, int32, int64, uint8, uint16, uint32, bool" in str(info.value)
    assert "cast" in info.value.hint


@pytest.mark.parametrize("dtype", ["int8", "int16", "uint16", "uint32"])
def test_keras_input_of_a_narrow_integer_dtype_loads(tmp_path: Path, dtype: str) -> None:
    from jaxport.compose import load_program

    program = load_program(extract_archive(_bare_keras(tmp_path, (4,), dtype), tmp_path / "x"),
                           trusted=False)
    (spec,) = next(iter(program.functions.values())).inputs
    assert spec.dtype == np.dtype(dtype)


def test_keras_input_over_the_element_cap(tmp_path: Path) -> None:
    from jaxport.compose import load_program

    path = _bare_keras(tmp_path, (1000, 1000, 1000), "float32")
    with pytest.raises(ShapeError, match="input 'x'.*over the limit of 16777216"):
        load_program(extract_archive(path, tmp_path / "x"), trusted=False)


def test_constraint_learning_that_never_settles_is_a_shape_error() -> None:
    """Every retrace asks a new `s >= k`: after MAX_LEARNED_CONSTRAINTS the tracing error is
    reported as a ShapeError (it was an UnboundLocalError)."""
    from jaxport.compose import load_function_program

    def fn(params, x):
        for k in range(20, 40):
            if x.shape[0] >= k:
                x = x + 1
        return x

    with pytest.raises(ShapeError, match="does not trace with inputs x=f32\\[s\\]"):
        load_function_program(fn, {}, {"x": "f32[s]"})
