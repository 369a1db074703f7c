"""Contact records: one record per call for the council's CRM (pure: no I/O).

:mod:`records.model` is the record (pydantic, strict) and its published JSON Schema;
:mod:`records.facts` the typed facts the IVR controller reports; :mod:`records.builder`
folds those facts and the AMI events Asterisk sends into records, by the call's Linkedid.
"""
