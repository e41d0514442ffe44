from __future__ import annotations

import os

import pytest

from services.registry.deployments import Deployments, DeploymentsFileError, parse

YAML = """
deployments:
  - name: smol-careful
    model: smollm2-135m-instruct
    parameters: {temperature: 0.2, max_tokens: 100}
    content_safety: true
    requests_per_minute: 60
  - name: smol
    model: smollm2-135m-instruct
"""


def test_yaml_and_json_files_parse_to_the_same_deployments():
    from_yaml = parse(YAML)
    from_json = parse('[{"name": "smol", "model": "smollm2-135m-instruct"}]')
    assert [d.name for d in from_yaml] == ["smol-careful", "smol"]
    assert from_yaml[1] == from_json[0]
    proto = from_yaml[0].proto()
    assert proto.content_safety and proto.requests_per_minute == 60
    assert dict(proto.default_parameters) == {"temperature": 0.2, "max_tokens": 100.0}


@pytest.mark.parametrize("text", ["[{name: a}]", "[{name: 'bad name', model: m}]", "[{name: a, model: m, x: 1}]",
                                  "[{name: a, model: m}, {name: A, model: n}]", "deployments: 3", "{"])
def test_a_bad_file_is_refused_with_the_reason(text):
    with pytest.raises(DeploymentsFileError):
        parse(text)


def test_the_file_is_reread_when_it_changes_and_a_bad_edit_keeps_the_last_good(tmp_path):
    path = tmp_path / "deployments.yaml"
    path.write_text(YAML)
    deployments = Deployments(path)
    assert deployments.find("SMOL").name == "smol"

    def write(text: str, step: int) -> None:
        path.write_text(text)
        os.utime(path, ns=(0, 10**9 * (1_000_000 + step)))

    write("- {name: other, model: m}", 1)
    assert deployments.find("smol") is None and deployments.find("other").model == "m"
    write("- {name: broken", 2)
    assert deployments.find("other") is not None
