"""IVR menus run over a FastAGI channel: a pure menu state machine and its adapter."""
