"""The call side: our FastAGI server and channel API (:mod:`ivr.fastagi`), the routes Asterisk
calls (:mod:`ivr.controller`), the menu driver, and the dialplan contract and generator.
Imports only :mod:`routing` below it."""
