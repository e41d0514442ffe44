"""Tiny GGUF files written here round-trip through the importer: exact where blocks carry over, close where
they are re-quantised, runnable by onnxruntime-genai, refused by name where unsupported, installed atomically."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from ingot.modelbuild.ggufimport import import_gguf
from ingot.modelbuild.ggufmodel import GGUFImportError
from tests.ggufmodels import TinySpec, onnx_logits, reference_logits, write_tiny_gguf

IDS = [1, 5, 9, 200, 260, 270, 100, 2, 33, 120, 7, 64]
# Every carried type in every role: q/k/v of three layouts (so they are not fused), gate and up fused though
# only one has mins, a Q4_1 embedding and a separate Q4_0 lm_head.
CARRIED = {"token_embd.weight": T.Q4_1, "attn_q.weight": T.Q4_0, "attn_k.weight": T.Q4_1,
           "attn_v.weight": T.Q8_0, "attn_output.weight": T.Q8_0, "ffn_gate.weight": T.Q4_1,
           "ffn_up.weight": T.Q4_0, "ffn_down.weight": T.Q8_0, "output.weight": T.Q4_0}
DEQUANTISED = {"token_embd.weight": T.F16, "attn_q.weight": T.BF16, "attn_k.weight": T.F32,
               "attn_v.weight": T.Q5_0, "attn_output.weight": T.Q5_1, "ffn_gate.weight": T.F16,
               "ffn_up.weight": T.Q4_0, "ffn_down.weight": T.Q5_0, "output.weight": T.BF16}


def models_in(root: Path) -> list[Path]:
    return [p.parent for p in root.glob("*/*/inference_model.json")]


def staging_leftovers(root: Path) -> list[Path]:
    return [p for p in (root / ".staging").glob("*") if not p.name.endswith(".lock")]


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "separate-lm-head"])
def test_carried_types_import_exactly_the_ggufs_fp32_model(tmp_path, tied):
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf", TinySpec(tied=tied, types=CARRIED))
    result = import_gguf(gguf, tmp_path / "models", name="tiny", accuracy="exact")
    expected = reference_logits(gguf, IDS)
    assert np.abs(onnx_logits(result.path, IDS) - expected).max() <= 1e-5 * np.abs(expected).max() + 1e-5


def test_other_types_import_close_after_8_bit_requantisation(tmp_path):
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf", TinySpec(tied=False, types=DEQUANTISED))
    result = import_gguf(gguf, tmp_path / "models", name="tiny", accuracy="exact")
    expected = reference_logits(gguf, IDS)
    assert np.abs(onnx_logits(result.path, IDS) - expected).max() <= 0.03 * np.abs(expected).max()
    assert result.manifest["Import"]["tensorTypes"] == {"F16": 3, "BF16": 3, "F32": 7, "Q5_0": 4, "Q5_1": 2,
                                                         "Q4_0": 2}


@pytest.mark.parametrize(("accuracy", "levels"), [("fp32", {4: 1, 8: 4}), ("int8", {4: 4, 8: 4}),
                                                  ("exact", {4: 1, 8: 1})])
def test_every_matmul_takes_an_integer_zero_point_kernel_at_the_profiles_accuracy_level(tmp_path, accuracy, levels):
    import onnx

    gguf = write_tiny_gguf(tmp_path / "tiny.gguf", TinySpec(tied=False, types=CARRIED))
    result = import_gguf(gguf, tmp_path / "models", name="tiny", accuracy=accuracy)
    graph = onnx.load(str(result.path / "model.onnx"), load_external_data=False).graph
    matmuls = [n for n in graph.node if n.op_type == "MatMulNBits"]
    attributes = [{a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in matmuls]
    # No zero-point input: the default integer zero point (8 or 128), never a float one, which onnxruntime's
    # CPU kernels only serve by dequantising the whole matrix on every call.
    assert all(len(n.input) < 4 or not n.input[3] for n in matmuls)
    assert {a["bits"] for a in attributes} == {4, 8}
    assert all(a["accuracy_level"] == levels[a["bits"]] for a in attributes)
    rescored = any(n.name.startswith("/lm_head/rescore") for n in graph.node)
    assert rescored == (levels[4] == 4)  # the Q4_0 lm_head is rescored exactly when it runs on int8 activations


@pytest.mark.parametrize("accuracy", ["fp32", "int8"])
def test_an_imported_tiny_model_generates_with_onnxruntime_genai(tmp_path, accuracy):
    import onnxruntime_genai as og

    gguf = write_tiny_gguf(tmp_path / "tiny.gguf", TinySpec(types=CARRIED, tied=False))
    result = import_gguf(gguf, tmp_path / "models", name="tiny", accuracy=accuracy)
    model = og.Model(str(result.path))
    tokenizer = og.Tokenizer(model)
    prompt = tokenizer.apply_chat_template(json.dumps([{"role": "user", "content": "hello world"}]),
                                           add_generation_prompt=True)
    assert prompt == "<|im_start|>user\nhello world<|im_end|>\n<|im_start|>assistant\n"
    ids = tokenizer.encode(prompt)
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + 8, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(ids)
    first_logits = generator.get_logits()[0, -1]
    while not generator.is_done():
        generator.generate_next_token()
    generated = list(generator.get_sequence(0))[len(ids):]
    assert 1 <= len(generated) <= 8
    assert isinstance(tokenizer.decode(generated), str)
    # onnxruntime-genai's prefill sees the same logits as the graph run alone.
    assert np.allclose(first_logits, onnx_logits(result.path, list(ids))[-1], atol=1e-4)


def test_the_tokenizer_splits_text_as_the_vocabulary_was_merged(tmp_path):
    import onnxruntime_genai as og
    from tokenizers import Tokenizer

    gguf = write_tiny_gguf(tmp_path / "tiny.gguf", TinySpec())
    result = import_gguf(gguf, tmp_path / "models", name="tiny")
    ours = Tokenizer.from_file(str(result.path / "tokenizer.json"))
    genai = og.Tokenizer(og.Model(str(result.path)))
    text = "<|im_start|>user\nhello world, the model and the token 123<|im_end|>"
    ids = ours.encode(text).ids
    pieces = [ours.id_to_token(i) for i in ids]
    assert pieces[:4] == ["<|im_start|>", "user", "Ċ", "hello"] and "Ġworld" in pieces and "Ġtoken" in pieces
    assert ours.decode(ids, skip_special_tokens=False) == text
    assert list(genai.encode(text)) == ids
    config = json.loads((result.path / "tokenizer_config.json").read_text())
    assert (config["bos_token"], config["eos_token"], config["add_bos_token"]) == ("<|im_start|>", "<|im_end|>", False)
    genai_config = json.loads((result.path / "genai_config.json").read_text())["model"]
    assert (genai_config["eos_token_id"], genai_config["bos_token_id"], genai_config["type"]) == (2, 1, "llama")


def test_a_sentencepiece_vocabulary_becomes_a_byte_fallback_bpe_with_bos(tmp_path):
    import onnxruntime_genai as og
    from tokenizers import Tokenizer

    gguf = write_tiny_gguf(tmp_path / "tiny.gguf", TinySpec(tokenizer="llama"))
    result = import_gguf(gguf, tmp_path / "models", name="tiny")
    ours = Tokenizer.from_file(str(result.path / "tokenizer.json"))
    text = "hello world, the model!"
    ids = ours.encode(text).ids
    pieces = [ours.id_to_token(i) for i in ids]
    # BOS first (sentencepiece files add it unless they say otherwise), whole ▁-words, bytes for the rest.
    assert pieces[:3] == ["<s>", "\u2581hello", "\u2581world"] and "<0x2C>" in pieces and "\u2581model" in pieces
    assert ours.decode(ids) == text
    # onnxruntime-genai's encode adds no special tokens (ingot's tokenizer service does, when asked to).
    genai = og.Tokenizer(og.Model(str(result.path)))
    assert list(genai.encode(text)) == ours.encode(text, add_special_tokens=False).ids == ids[1:]
    assert genai.decode(ids) == text
    assert json.loads((result.path / "tokenizer_config.json").read_text())["add_bos_token"] is True


def test_an_unsupported_architecture_is_refused_by_name_and_leaves_nothing(tmp_path):
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf", TinySpec(architecture="gemma3"))
    with pytest.raises(GGUFImportError, match="gemma3"):
        import_gguf(gguf, tmp_path / "models", name="tiny")
    assert models_in(tmp_path / "models") == [] and staging_leftovers(tmp_path / "models") == []


def test_an_unsupported_tensor_type_is_refused_naming_type_and_tensor(tmp_path):
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf", TinySpec(types={"ffn_down.weight": T.I32}))
    with pytest.raises(GGUFImportError, match=r"I32 \(e\.g\. blk\.0\.ffn_down\.weight\)"):
        import_gguf(gguf, tmp_path / "models", name="tiny")
    assert models_in(tmp_path / "models") == [] and staging_leftovers(tmp_path / "models") == []


def test_importing_again_is_a_no_op_until_forced(tmp_path):
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf", TinySpec())
    first = import_gguf(gguf, tmp_path / "models", name="tiny", alias="tiny-alias")
    again = import_gguf(gguf, tmp_path / "models", name="tiny", alias="tiny-alias")
    forced = import_gguf(gguf, tmp_path / "models", name="tiny", alias="tiny-alias", force=True)
    assert (first.already_imported, again.already_imported, forced.already_imported) == (False, True, False)
    assert first.path == tmp_path / "models" / "imported" / "tiny-1"
    assert first.manifest["Name"] == "tiny:1" and first.manifest["Alias"] == "tiny-alias"
    assert models_in(tmp_path / "models") == [first.path]


def test_the_command_line_reports_progress_as_json_lines_and_names_the_model(tmp_path):
    gguf = write_tiny_gguf(tmp_path / "My Model.Q4_0.gguf", TinySpec())
    done = subprocess.run([sys.executable, "-m", "ingot.modelbuild.ggufimport", str(gguf), "--home",
                           str(tmp_path / "home"), "--progress-json"], capture_output=True, text=True, check=True)
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    fractions = [line["progress"] for line in lines if "progress" in line]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert lines[-1]["done"]["name"] == "My-Model.Q4_0-generic-cpu:1"
    assert Path(lines[-1]["done"]["path"]).is_dir()

    failed = subprocess.run([sys.executable, "-m", "ingot.modelbuild.ggufimport", str(tmp_path / "missing.gguf"),
                             "--home", str(tmp_path / "home"), "--progress-json"], capture_output=True, text=True)
    assert failed.returncode == 1
    assert json.loads(failed.stdout.splitlines()[-1])["error"]["kind"] == "not_found"
