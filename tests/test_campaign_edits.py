"""Edit campaigns: a `source` column names, per row, the output the row edits; each source
is checked by the edit page's upload rules, and each row becomes an ordinary edit."""

from __future__ import annotations

import hashlib

import pytest
from django.core.files.base import ContentFile

from campaigns import table
from campaigns.forms import source_reader
from campaigns.models import launch
from studio import imagerules
from studio.models import Attempt, GenerationRequest, OutputImage, Status
from tests.conftest import png, run_until_done

pytestmark = pytest.mark.django_db

DEFAULTS = table.Defaults(width=1024, height=1024, quality="low", output_format="png")


def an_output(user, route, size=(1536, 1024)) -> OutputImage:
    data = png(size=size)
    request = GenerationRequest.objects.create(
        created_by=user,
        route=route,
        prompt="a lamp",
        prompt_sha256="0" * 64,
        width=size[0],
        height=size[1],
        quality="low",
        output_format="png",
        provider_model="gpt-image-2",
        status=Status.SUCCEEDED,
    )
    output = OutputImage(
        request=request,
        attempt=Attempt.begin(request, route),
        sha256=hashlib.sha256(data).hexdigest(),
        bytes=len(data),
        width=size[0],
        height=size[1],
        format="png",
    )
    output.file.save("00.png", ContentFile(data), save=False)
    output.save()
    return output


def check(text: str, frame, user) -> table.CheckedTable:
    return table.check(table.read_rows(text), frame, DEFAULTS, source_reader(user))


def test_an_edit_frame_needs_a_source_column(seed_frames, designer):
    frame = seed_frames["targeted-edit"].current_version
    found = [
        str(p) for p in check("fixed,region,new_detail\nlamp,sky,dusk\n", frame, designer).problems
    ]
    assert found[0].startswith("Column source: missing")


def test_each_source_is_checked_and_named_by_row(
    seed_frames, designer, other_designer, sandbox_route
):
    frame = seed_frames["targeted-edit"].current_version
    mine = an_output(designer, sandbox_route)
    theirs = an_output(other_designer, sandbox_route)
    checked = check(
        "fixed,region,new_detail,source\n"
        f"lamp,sky,dusk,{mine.id}\n"
        "lamp,sky,dusk,abc\n"
        f"lamp,sky,dusk,{theirs.id}\n"
        "lamp,sky,dusk,\n",
        frame,
        designer,
    )
    found = [str(p) for p in checked.problems]
    assert found == [
        "Row 2, column source: 'abc' is not an output ID.",
        f"Row 3, column source: no output {theirs.id} that you may edit.",
        "Row 4, column source: the output ID of the image this row edits.",
    ]
    [row] = checked.rows
    assert row.source.from_output == mine
    assert (row.width, row.height) == imagerules.edit_output_size(1536, 1024)


def test_an_edit_row_runs_as_an_ordinary_edit(
    seed_frames, designer, live_sandbox, monkeypatch, settings, tmp_path
):
    monkeypatch.setattr("campaigns.models._release", lambda: None)
    frame = seed_frames["targeted-edit"].current_version
    source = an_output(designer, live_sandbox)
    checked = check(f"fixed,region,new_detail,source\nlamp,sky,dusk,{source.id}\n", frame, designer)
    assert checked.is_valid, checked.problems
    campaign = launch(
        owner=designer, name="Edits", route=live_sandbox, rows=checked.rows, frame_version=frame
    )
    request = campaign.requests.get()
    assert request.operation == GenerationRequest.Operation.EDIT
    assert request.parent_output == source
    [stored] = request.inputs.all()
    assert stored.role == "source" and stored.from_output == source
    GenerationRequest.objects.filter(pk=request.pk).update(held=False)
    run_until_done(request)
    assert request.status == Status.SUCCEEDED, request.failure_message
    assert request.outputs.get().width == 1536
    # Run again: the same source goes with the new request.
    again = campaign.run_row_again(designer, 1)
    assert again.inputs.get().sha256 == stored.sha256
