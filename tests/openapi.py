"""Check response bodies against OpenAI's published OpenAPI document (shared/reference)."""

from __future__ import annotations

import functools
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

OPENAPI_PATH = Path(__file__).resolve().parents[2] / "shared" / "reference" / "openai-openapi.yaml"
DOCUMENT_URI = "urn:openai-openapi"


@functools.lru_cache(maxsize=1)
def openapi_document() -> dict:
    """The whole document, parsed once a session: it is 3 MB of YAML."""
    with OPENAPI_PATH.open(encoding="utf-8") as spec:
        return yaml.load(spec, Loader=yaml.CSafeLoader)


@functools.lru_cache(maxsize=32)
def schema_validator(name: str) -> Draft202012Validator:
    """A validator for `#/components/schemas/<name>` whose $refs resolve within the document.

    OpenAPI's `nullable` and `x-*` keys are unknown to JSON Schema and so ignored.
    """
    document = openapi_document()
    if name not in document["components"]["schemas"]:
        raise KeyError(f"No schema named {name!r} in {OPENAPI_PATH.name}")
    registry = Registry().with_resource(
        DOCUMENT_URI, Resource.from_contents(document, default_specification=DRAFT202012)
    )
    return Draft202012Validator(
        {"$ref": f"{DOCUMENT_URI}#/components/schemas/{name}"}, registry=registry
    )


def assert_matches_schema(instance: object, name: str) -> None:
    """Fail with every problem found, not just the first."""
    problems = [
        f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in schema_validator(name).iter_errors(instance)
    ]
    assert not problems, f"does not match {name}:\n" + "\n".join(problems)
