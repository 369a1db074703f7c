"""Contact records: one per call, versioned, delivered to each council's CRM with nothing lost."""
