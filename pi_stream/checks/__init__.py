"""The checks `pi-stream verify` makes, shipped as a pytest suite a user runs against their own hosts.

    PI_STREAM_PASSWORD=... pytest --pyargs pi_stream.checks --site SITE_DIR --junitxml=checks.xml

One test per check, with ids like `pi1-service nginx active` or `pi1-yard: segment decodes as H.264`.
plan.py is the one list of checks; run.py runs them (each once, after what it needs); verify.py and
plugin.py (pytest) both use them. docs/checks.md is the user's guide.
"""
