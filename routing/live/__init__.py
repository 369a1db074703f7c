"""Live queue state: AMI events in (pure conversion), Redis state out (store, lease)."""
