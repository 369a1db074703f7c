"""callrouter: the application. The ``callrouter`` command, ``serve`` wiring, settings and logging.

The subsystems it wires together, each a top-level package (imports run one way, downwards):

- :mod:`emulator`: an Asterisk emulator (FastAGI and AMI) for tests, benchmarks and the demo;
- :mod:`agi_scripts`: the classic AGI fail-static fallback;
- :mod:`ivr`: the call side: FastAGI server, channel API, routes, the dialplan contract;
- :mod:`routing`: the decision and the live state: plan, validation, decide, AMI to Redis, toggles.
"""

__version__ = "0.1.0"
