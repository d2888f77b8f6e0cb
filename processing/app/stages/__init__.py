"""The stages of a run: begin, process, audit, publish, and finish (after success or failure).

Each stage can run in its own process (an Airflow task each, on Kubernetes) or all in one (the
CLI's ``run``): what a later stage needs is a typed record kept beside the run's staging
(:mod:`.records`), never passed around as data. Each stage holds the date's lock while it works
(:mod:`.scope`), resuming the run's own lock (a stage retried in a new process resumes it too),
and returns a few small facts (for XCom and logs).

    begin ── PlanRecord ──> process ── ProcessRecord ──> audit ── AuditRecord ──> publish
                                  (Dask: :mod:`.dask_work`)                    finish (always)
"""

from processing.app.stages.audit_stage import audit, check_totals
from processing.app.stages.dask_work import Progress
from processing.app.stages.finish_stage import discard, finish
from processing.app.stages.plan_stage import begin
from processing.app.stages.process_stage import process
from processing.app.stages.publish_stage import RunReport, publish
from processing.app.stages.records import AuditRecord, PlanRecord, ProcessRecord, RunRecords
from processing.app.stages.scope import new_tag

__all__ = [
    "AuditRecord",
    "PlanRecord",
    "ProcessRecord",
    "Progress",
    "RunRecords",
    "RunReport",
    "audit",
    "begin",
    "check_totals",
    "discard",
    "finish",
    "new_tag",
    "process",
    "publish",
]
