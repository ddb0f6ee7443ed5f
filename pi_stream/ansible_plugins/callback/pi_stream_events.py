"""Ansible stdout callback: one JSON object per line, for pi_stream.deploy.

pi-stream shows progress and judges idempotence from these structured events
(task start, per-host result, final stats), never by scraping Ansible's text.
Results of `no_log` tasks arrive censored by Ansible before they reach us;
we forward only the fields the summary needs, never whole results.
"""

from __future__ import annotations

import json
import sys
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: pi_stream_events
    type: stdout
    short_description: JSON lines for pi-stream
    description: One JSON object per event on stdout, read by pi_stream.deploy.
"""

MESSAGE_KEYS = ("msg", "stderr", "module_stderr", "reason")


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "pi_stream_events"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._async_started: dict[tuple, float] = {}
        self._started = time.monotonic()

    def _emit(self, event: str, **fields) -> None:
        # "at": seconds since the run began, so a run's events.jsonl shows where its time went.
        line = json.dumps({"event": event, "at": round(time.monotonic() - self._started, 3), **fields}, default=str)
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def _result(self, event: str, result, **extra) -> None:
        data = result._result
        parts = []
        for key in MESSAGE_KEYS:
            value = data.get(key)
            if value:
                parts.append(value if isinstance(value, str) else json.dumps(value, default=str))
        message = "\n".join(parts)
        self._emit(
            event,
            host=result._host.get_name(),
            task=result._task.get_name(),
            action=result._task.action,
            changed=bool(data.get("changed", False)),
            message=message[-2000:],
            **extra,
        )

    def v2_playbook_on_play_start(self, play) -> None:
        self._emit("play_start", play=play.get_name())

    def v2_playbook_on_task_start(self, task, is_conditional) -> None:
        self._emit("task_start", task=task.get_name())

    def v2_playbook_on_handler_task_start(self, task) -> None:
        self._emit("task_start", task=task.get_name(), handler=True)

    def v2_runner_on_ok(self, result) -> None:
        self._result("ok", result)

    def v2_runner_on_failed(self, result, ignore_errors=False) -> None:
        self._result("failed", result, ignored=bool(ignore_errors))

    def v2_runner_on_unreachable(self, result) -> None:
        self._result("unreachable", result)

    def v2_runner_on_async_poll(self, result) -> None:
        # Long tasks (the nginx source build) poll every few seconds: report how long they have run.
        key = (result._host.get_name(), result._result.get("ansible_job_id"))
        started = self._async_started.setdefault(key, time.monotonic())
        self._emit("async_poll", host=key[0], task=result._task.get_name(), elapsed=round(time.monotonic() - started, 1))

    def v2_runner_on_skipped(self, result) -> None:
        self._emit("skipped", host=result._host.get_name(), task=result._task.get_name())

    def v2_playbook_on_stats(self, stats) -> None:
        hosts = sorted(stats.processed.keys())
        self._emit("stats", hosts={host: stats.summarize(host) for host in hosts})

    def v2_playbook_on_no_hosts_matched(self) -> None:
        self._emit("warning", message="no hosts matched")

    def v2_runner_item_on_failed(self, result) -> None:
        self._result("item_failed", result)
