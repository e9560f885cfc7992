"""The YAML loader reads manifests as kubectl does, with libyaml and with the pure-Python parser alike."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gitops import yamlload
from gitops.yamlload import ManifestError, load_manifests, load_yaml
from tests.conftest import Kubectl

LOADERS = [pytest.param(yamlload.CLoader, id="libyaml"), pytest.param(yamlload.PyLoader, id="python")]


@pytest.fixture(params=LOADERS)
def loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[type[Any]]:
    """Tests using this fixture run with both loaders: they must agree."""
    if request.param is None:
        pytest.skip("PyYAML was built without libyaml")
    monkeypatch.setattr(yamlload, "Loader", request.param)
    yield request.param


# What kubectl v1.32 sends to the API server for each value (checked with `kubectl create --dry-run=client -o json`).
KUBECTL_VALUES = {
    "a: b\t\nc: d\n": {"a": "b", "c": "d"},  # a tab after a value is whitespace
    "a:\tb\n": {"a": "b"},
    "a: b\t# comment\n": {"a": "b"},
    "a: y\n": {"a": True},
    "a: on\n": {"a": True},
    "a: No\n": {"a": False},
    "a: 'on'\n": {"a": "on"},
    "a: 09\n": {"a": 9},
    "a: 0755\n": {"a": 493},
    "a: 0o17\n": {"a": 15},
    "a: 0x1F\n": {"a": 31},
    "a: 1_000\n": {"a": 1000},
    "a: 1e3\n": {"a": 1000},
    "a: 1.0\n": {"a": 1},
    "a: 1.5\n": {"a": 1.5},
    "a: 2024-01-02\n": {"a": "2024-01-02"},
    "a: 12:30\n": {"a": "12:30"},
    "a: =\n": {"a": "="},
    "a: ~\nb:\n": {"a": None, "b": None},
    "on: x\n1: z\n": {"true": "x", "1": "z"},
    "a: x\na: y\n": {"a": True},  # the last duplicate wins, and y is a boolean
    "base: &b {p: 1}\nmerged:\n  <<: *b\n  q: 2\n": {"base": {"p": 1}, "merged": {"p": 1, "q": 2}},
}


@pytest.mark.usefixtures("loader")
@pytest.mark.parametrize(("text", "expected"), KUBECTL_VALUES.items(), ids=list(map(repr, KUBECTL_VALUES)))
def test_values_mean_what_they_mean_to_kubectl(text: str, expected: dict[str, Any]) -> None:
    assert load_yaml(text, "values.yaml") == expected


@pytest.mark.usefixtures("loader")
@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("a:\n  b: c\n\t\n  d: e\n", 3, r"tab|'\\t'"),  # a tab as indentation is an error for kubectl too
        ("a:\n-\tx\n", 2, "cannot start any token"),
        ("a: .nan\n", 1, "JSON has no NaN"),
        ("a: !!set {x}\n", 1, "not supported"),
        ("~: x\n", 1, "unsupported map key null"),
        ("a: 'unterminated\n", 2, "unexpected end of stream"),
    ],
)
def test_what_kubectl_rejects_is_an_error_naming_the_line(text: str, line: int, problem: str) -> None:
    with pytest.raises(ManifestError, match=problem) as err:
        load_yaml(text, "apps/web/values.yaml")
    assert (err.value.source, err.value.line) == ("apps/web/values.yaml", line)
    assert str(err.value).startswith(f"apps/web/values.yaml:{line}: ")


def test_kubectl_agrees(cluster: Any, tmp_path: Path) -> None:
    """The real kubectl, as the oracle: the same documents decode to the same JSON."""
    kubectl = Kubectl(cluster.write_kubeconfig(tmp_path / "kubeconfig"), tmp_path)
    docs = [
        f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c{i}\nmore:\n"
        + "".join(f"  {line}\n" for line in text.splitlines())
        for i, text in enumerate(KUBECTL_VALUES)
    ]
    stream = "---\n".join(docs)
    out = kubectl("create", "--dry-run=client", "-o", "json", "--validate=false", "-f", "-", input=stream)
    decoder, printed, end = json.JSONDecoder(), [], 0
    while end < len(out.rstrip()):  # one JSON object per document, back to back
        obj, end = decoder.raw_decode(out, end)
        printed.append(obj["more"])
        end += len(out[end:]) - len(out[end:].lstrip())
    assert printed == [o["more"] for o in load_manifests(stream, "all.yaml")]


@pytest.mark.usefixtures("loader")
def test_a_stream_skips_empty_documents_and_expands_lists() -> None:
    text = """\ufeff# leading comment
---
apiVersion: v1
kind: ConfigMap
metadata: {name: one}
---
# a document with only a comment
---
---
apiVersion: v1
kind: List
items:
  - {apiVersion: v1, kind: Service, metadata: {name: two}}
  - apiVersion: v1
    kind: ConfigMapList
    items:
      - {apiVersion: v1, kind: ConfigMap, metadata: {name: three}}
...
---
apiVersion: v1
kind: List
"""
    assert [o["metadata"]["name"] for o in load_manifests(text, "all.yaml")] == ["one", "two", "three"]


@pytest.mark.usefixtures("loader")
def test_json_documents_and_arrays() -> None:
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "j"}, "data": {"ratio": 1.0, "n": 1e3}}
    assert load_manifests(json.dumps(obj), "cm.json") == [{**obj, "data": {"ratio": 1, "n": 1000}}]
    assert load_manifests("\t" + json.dumps([obj, obj]), "two.json") == [{**obj, "data": {"ratio": 1, "n": 1000}}] * 2
    with pytest.raises(ManifestError, match=r"^broken\.json:3: .*expected ',' or '}'"):
        load_manifests('{"apiVersion": "v1",\n  "kind": "A"\n', "broken.json")


@pytest.mark.usefixtures("loader")
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("apiVersion: v1\nkind: A\nmetadata: {}\n---\nkind: B\n", "x.yaml:5: document 2 has no apiVersion"),
        ("---\n---\napiVersion: v1\nmetadata: {}\n", "x.yaml:3: document 2 has no kind"),
        ("just a sentence\n", "x.yaml:1: document 1 is str, not an object"),
        ("apiVersion: v1\nkind: List\nitems:\n  - {kind: X}\n", "x.yaml:1: document 1, item 1 has no apiVersion"),
        ('[{"apiVersion": "v1"}]', "x.yaml:1: document 1, item 1 has no kind"),
    ],
)
def test_objects_without_apiversion_or_kind_are_named_by_file_document_and_line(text: str, message: str) -> None:
    with pytest.raises(ManifestError) as err:
        load_manifests(text, "x.yaml")
    assert str(err.value) == message


@pytest.mark.usefixtures("loader")
def test_alias_bombs_are_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]  # 10^9 values once expanded
    with pytest.raises(ManifestError, match=r"^bomb\.yaml:1: document expands aliases into too many values"):
        load_yaml("\n".join(lines), "bomb.yaml")
    assert load_yaml("base: &b {p: 1}\nuse: *b\n", "ok.yaml") == {"base": {"p": 1}, "use": {"p": 1}}


@pytest.mark.usefixtures("loader")
def test_load_yaml_reads_exactly_one_document() -> None:
    assert load_yaml("", "empty.yaml") is None
    assert load_yaml("# nothing\n", "empty.yaml") is None
    assert load_yaml("replicas: 3\n", "values.yaml") == {"replicas": 3}
    with pytest.raises(ManifestError, match=r"^values\.yaml:3: expected a single YAML document"):
        load_yaml("a: 1\n---\nb: 2\n", "values.yaml")
