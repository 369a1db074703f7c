"""AMI: the panoramisk adapter, settings and the queue-state consumer."""
