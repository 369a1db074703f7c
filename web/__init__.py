"""The supervisors' and engineers' service: an authenticated HTTP API and web page over the
routing state (toggles, plan versions, live view) and the contact records."""
