"""Collected with the checks. `pytest --pyargs pi_stream.checks` without the plugin loaded (pytest started with
PYTEST_DISABLE_PLUGIN_AUTOLOAD, or pi-stream installed without its entry point) gets it here, late: too late for
`--site` on the command line, in time to say what is missing instead of "fixture 'pi_stream_check' not found"."""

from __future__ import annotations

import pytest

from pi_stream.checks import plugin


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin(plugin.PLUGIN) and not config.pluginmanager.is_registered(plugin):
        config.pluginmanager.register(plugin, plugin.PLUGIN)
        config.stash[plugin.LATE] = True
