"""Settings of notebooks: the notebooks function (Notebook CRs stored in the handler) and the
database handler's notebook runs (`POST /compute/<name>`)."""

from __future__ import annotations

import sys
from typing import Literal

from pydantic import Field

from functions.settings import DbHandlerClient, _EnvSettings


class NotebookSettings(DbHandlerClient):
    """Settings of the notebooks function (Krateo's uploader used an endpoint Secret; we use the DatabaseConfig)."""

    database_config: str = Field(default="finops/finops-db", alias="FINOPS_NOTEBOOKS_DATABASE_CONFIG", description="DatabaseConfig <namespace>/<name> whose user and password authenticate the /compute calls.")
    max_code_bytes: int = Field(default=4 * 1024 * 1024, ge=1, alias="FINOPS_NOTEBOOKS_MAX_CODE_BYTES", description="Largest notebook source accepted from spec.inline or spec.api.")


class NotebookRunSettings(_EnvSettings):
    """Limits and fence of notebook runs (`POST /compute/<name>`), read by the database handler."""

    timeout_s: float = Field(default=120.0, gt=0, alias="FINOPS_NOTEBOOK_TIMEOUT", description="Seconds a notebook may run before it and every process it started are killed (answer 504).")
    memory_mb: int = Field(default=1024, ge=64, alias="FINOPS_NOTEBOOK_MEMORY_MB", description="Memory of a run, MiB: the address-space limit of each of its processes (RLIMIT_AS), and the most all of them may hold together (proportional set sizes, measured every 0.2 s; the run is stopped there). Answer 422.")
    max_file_mb: int = Field(default=256, ge=1, alias="FINOPS_NOTEBOOK_MAX_FILE_MB", description="Largest file a notebook may write in its work directory, its stderr included, MiB (RLIMIT_FSIZE).")
    max_disk_mb: int = Field(default=512, ge=1, alias="FINOPS_NOTEBOOK_MAX_DISK_MB", description="Most a run may hold in its work directory, all files together (and files it keeps open after deleting them), MiB; measured every 0.2 s, the run is stopped there (answer 422).")
    max_output_mb: int = Field(default=32, ge=1, alias="FINOPS_NOTEBOOK_MAX_OUTPUT_MB", description="Largest stdout of a run, MiB: the answer body. A run writing more is stopped there (answer 422).")
    max_running: int = Field(default=4, ge=1, le=500, alias="FINOPS_NOTEBOOK_MAX_RUNNING", description="Notebooks running at once per handler process; more wait up to 10 s, then 503 + Retry-After.")
    max_processes: int = Field(default=64, ge=1, alias="FINOPS_NOTEBOOK_MAX_PROCESSES", description="Processes and threads one run may have (RLIMIT_NPROC; a fork bomb gets EAGAIN). Non-root handlers: on top of their user's current count.")
    cpu_s: int = Field(default=240, ge=1, alias="FINOPS_NOTEBOOK_CPU_SECONDS", description="CPU seconds each notebook process may use, all its threads together (RLIMIT_CPU; answer 422).")
    fence: Literal["required", "warn", "off"] = Field(default="required", alias="FINOPS_NOTEBOOK_FENCE", description="When the kernel cannot build the whole notebook fence (GET /compute/fence): `required` refuses runs (503 naming what is missing), `warn` runs with what there is and logs a warning per run, `off` builds none (trusted notebooks only).")
    argv_password: bool = Field(default=False, alias="FINOPS_NOTEBOOK_ARGV_PASSWORD", description="Also put the caller's password on the notebook's real command line (readable by other processes in /proc/<pid>/cmdline). Off: argv shows `-`; sys.argv[4] inside the notebook still holds the password, as Krateo's notebooks expect.")
    python: str = Field(default="", alias="FINOPS_NOTEBOOK_PYTHON", description="Interpreter of notebooks (default: the handler's own, which has crate and functions.notebooks_api).")

    @property
    def interpreter(self) -> str:
        return self.python or sys.executable
