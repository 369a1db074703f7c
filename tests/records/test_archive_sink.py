"""The owner's archive as a delivery sink: a batch appended on flush, each version once, and
a payload that is not this tenant's contact record refused (a dead letter, never filed)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from records.archive import Archive
from records.delivery import sink_tenant
from records.sinks import ArchiveSink
from records.stream import Envelope
from tests.records.conftest import CENTRE, T0, TENANT
from tests.records.factory import record


def _envelope(
    rid: str, version: int = 1, tenant: str | None = TENANT, envelope_tenant: str = TENANT
) -> Envelope:
    made = record(rid, T0, version=version, tenant=tenant)
    return Envelope(rid, version, envelope_tenant, CENTRE, T0, T0 + timedelta(seconds=version),
                    made.model_dump(mode="json"))  # fmt: skip


async def test_a_batch_is_appended_on_flush_and_each_version_stored_once(tmp_path: Path) -> None:
    sink = ArchiveSink(TENANT, Archive(tmp_path))
    for env in (_envelope("1.1"), _envelope("1.1", 2), _envelope("1.2")):
        assert (await sink.send(env)).kind == "delivered"
    assert Archive(tmp_path).days(TENANT) == []  # nothing written before the flush
    await sink.flush()
    assert (await sink.send(_envelope("1.1"))).kind == "delivered"  # delivered again after a crash
    await sink.flush()
    reader = Archive(tmp_path)
    (day,) = reader.days(TENANT)
    stored = sorted((r.id, r.version) for r in reader.versions(TENANT, day))
    assert stored == [("1.1", 1), ("1.1", 2), ("1.2", 1)]
    assert len((tmp_path / TENANT / f"{day}.jsonl").read_bytes().splitlines()) == 3


async def test_what_is_not_this_tenants_record_is_refused(tmp_path: Path) -> None:
    sink = ArchiveSink(TENANT, Archive(tmp_path))
    odd = Envelope("1.3", 1, TENANT, CENTRE, T0, T0, {"record_id": "1.3"})
    refused = await sink.send(odd)
    assert refused.kind == "refused"
    assert refused.answer.startswith("not a contact record")
    other = await sink.send(_envelope("1.4", tenant="charnwood"))
    assert (other.kind, other.answer) == ("refused", "the record's tenant differs from its envelope's")
    mismatched = Envelope("1.5", 2, TENANT, CENTRE, T0, T0, _envelope("1.5").payload)
    assert (await sink.send(mismatched)).kind == "refused"
    await sink.flush()
    assert Archive(tmp_path).tenants() == []


async def test_calls_to_a_number_no_council_owns_are_archived_in_their_own_folder(tmp_path: Path) -> None:
    sink = ArchiveSink(None, Archive(tmp_path))
    assert sink.name == "_no-tenant/_owner-archive"
    assert sink_tenant(sink.name) == ""  # the envelopes' tenant of such calls
    assert sink_tenant(f"{TENANT}/crm") == TENANT
    assert (await sink.send(_envelope("1.6", tenant=None, envelope_tenant=""))).kind == "delivered"
    assert (await sink.send(_envelope("1.7"))).kind == "refused"  # a council's record: not here
    await sink.flush()
    reader = Archive(tmp_path)
    assert reader.tenants() == ["_no-tenant"]
    (day,) = reader.days(None)
    assert [r.id for r in reader.versions(None, day)] == ["1.6"]
