"""The capacity snapshot exchange between partner centres."""
