"""The DAG's first task: wait, deferred, until the day is complete in its source.

A deferrable sensor: it looks (``processing.app.airflow_tasks.day_complete``: a row at the day's
watermark, read from the BigQuery table), and while the day is not complete it defers to the
triggerer for ``--day-complete-poll-seconds`` (no worker slot is held, and the triggerer needs
no credentials: it only keeps time), then looks again in a task of its own. Past the deadline
it fails without retries, and its failure notice (the DAG's ``on_failure_callback``) is the
alert. Light to import: the DAG file imports this module when it is parsed."""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import BaseOperator


class DayCompleteSensor(BaseOperator):
    """Wait until the run's date is complete in the source (see the module's docstring)."""

    ui_color = "#e8f4f8"

    def execute(self, context: Any) -> str:
        return self.look(context)

    def look(self, context: Any, event: Any = None) -> str:
        from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
        from airflow.sdk.exceptions import AirflowFailException

        from processing.app import airflow_tasks

        wait = airflow_tasks.day_complete(context)
        if wait.complete:
            self.log.info("%s", wait.message)
            return wait.message
        if wait.late:
            raise AirflowFailException(wait.message)
        self.log.info("%s", wait.message)
        self.defer(trigger=TimeDeltaTrigger(dt.timedelta(seconds=wait.seconds)), method_name="look")
        raise AssertionError("defer() raises")  # pragma: no cover
