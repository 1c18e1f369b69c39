"""The processes that deploy/Procfile and `make run` start consume every queue Herald publishes to,
each in one pool, and `make run` runs the Procfile's pools."""

import shlex
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from django.conf import settings

from deploy.dev import run
from tests.conftest import REPO


def pools(commands: Iterable[str]) -> dict[str, int]:
    """The Celery worker pools among these command lines: their queues (as -Q names them) -> processes."""
    found: dict[str, int] = {}
    for command in commands:
        argv = shlex.split(command)
        if "worker" not in argv or not any(Path(arg).name == "celery" for arg in argv):
            continue  # web, beat, the dispatcher, the local servers of `make run`
        found[argv[argv.index("-Q") + 1]] = int(argv[argv.index("--concurrency") + 1])
    return found


def procfile_commands() -> list[str]:
    lines = (REPO / "deploy" / "Procfile").read_text().splitlines()
    return [line.split(":", 1)[1] for line in lines if line.strip() and not line.startswith("#")]


def make_run_commands() -> list[str]:
    return list(run.process_commands({"PORT": "8000"}, run.Services()).values())


def test_the_procfile_runs_one_pool_on_every_queue_herald_publishes_to() -> None:
    consumed = Counter(queue for names in pools(procfile_commands()) for queue in names.split(","))
    assert consumed == Counter(queue.name for queue in settings.CELERY_TASK_QUEUES)
    assert settings.WEBHOOKS["queue"] in consumed


def test_make_run_runs_the_procfiles_pools() -> None:
    assert pools(make_run_commands()) == pools(procfile_commands())
