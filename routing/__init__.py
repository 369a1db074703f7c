"""The decision and the live state: the routing plan, its validation, ``decide()``, overflow, the
menu state machine (:mod:`routing.core`), AMI to Redis (:mod:`routing.ami`, :mod:`routing.live`)
and supervisor toggles. Imports nothing from the packages above it (``ivr``, ``callrouter``)."""
