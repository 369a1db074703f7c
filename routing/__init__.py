"""callrouter: call routing and IVR control for Asterisk-based council contact centres."""

__version__ = "0.1.0"
