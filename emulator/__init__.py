"""Emulators of Asterisk for tests, benchmarks and demos (real TCP, faithful to captures)."""

from emulator.agi import (
    CallerScript,
    EmulatedCall,
    HangUpAfter,
    HangUpDuring,
    Press,
    PressAfterPrompt,
    Silence,
    Step,
    run_call,
)

__all__ = [
    "CallerScript",
    "EmulatedCall",
    "HangUpAfter",
    "HangUpDuring",
    "Press",
    "PressAfterPrompt",
    "Silence",
    "Step",
    "run_call",
]
