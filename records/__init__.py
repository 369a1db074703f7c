"""Contact records: one per call, versioned, delivered to each council's CRM with nothing lost,
and kept in the council's own archive.

- :mod:`records.model`: the record (pydantic, strict) and its published JSON Schema;
- :mod:`records.facts`, :mod:`records.builder`: the facts the IVR controller reports and the AMI
  events Asterisk sends, folded into records by the call's Linkedid (pure: no I/O);
- :mod:`records.outbox`: from the builder to a sink, once a second;
- :mod:`records.stream`, :mod:`records.delivery`, :mod:`records.sinks`: the per-centre Redis
  stream (appended once per record version) and delivery to the councils' CRMs;
- :mod:`records.archive`, :mod:`records.export`, :mod:`records.kpi`, :mod:`records.report`: the
  council's own archive, its export and subject-access search, and the KPI report.
"""
