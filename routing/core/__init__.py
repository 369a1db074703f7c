"""The pure core: plan models, validation, schedules and the decision engine.

Nothing under ``routing.core`` performs I/O, reads the clock or the environment."""
