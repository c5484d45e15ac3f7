"""Command line: parse options, call the pipeline, render, return an exit code.

Exit codes (``pooldoctor.errors.ExitCode``): 0 nothing reached --fail-on; 1 a project wrapper
or task reached --fail-on; 2 usage error; 3 the check could not run; 130 interrupted (Ctrl-C,
SIGTERM, SIGHUP).
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

# Only what defining the commands needs: each command imports its own modules when it runs, so
# --help loads neither the reporters nor Django, and scan never loads Django or Celery.
from pooldoctor import __version__, extras
from pooldoctor.config import config_globs, config_list
from pooldoctor.errors import ExitCode, MissingExtraError, PooldoctorError, UsageError

if TYPE_CHECKING:
    from pooldoctor.core.model import InspectReport, Report, SimulateReport, SubjectRun
    from pooldoctor.core.subjects import Subject
    from pooldoctor.hosts.inprocess.isolation import Progress

EXIT_CODES_HELP = (
    "Exit codes: 0 nothing reached --fail-on; 1 a project wrapper or task reached --fail-on; "
    "2 usage error; 3 the check could not run (settings, database, engine, wrapper, missing "
    "extra); 130 interrupted (Ctrl-C, SIGTERM or SIGHUP)."
)
DEMO = Path(__file__).resolve().parent / "demo" / "leaky"
"""The bundled leaking project (package data: in the wheel as in the source tree)."""


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES_HELP)
@click.version_option(__version__, prog_name="pooldoctor")
@click.option(
    "--quiet",
    "-q",
    is_flag=True,
    help="Only the report: no progress on the terminal, no one-line summary on stderr after "
    "--output.",
)
@click.option(
    "--verbose",
    "-v",
    is_flag=True,
    help="More on stderr: a line per subject measured (and per simulated task) when stderr is "
    "not a terminal, and the files scan skipped, with --output or a format other than text (the "
    "text report lists them itself).",
)
@click.pass_context
def cli(context: click.Context, quiet: bool, verbose: bool) -> None:
    """Measure whether a Django project leaks database connections when async ORM code runs
    outside a request (Celery tasks, scripts, management commands).

    -q and -v go before the command or after it (pooldoctor -q check, pooldoctor check -q).
    [tool.pooldoctor] is read from the nearest pyproject.toml upward that has it (an unknown
    key is an error).

    Shell completion: eval "$(_POOLDOCTOR_COMPLETE=bash_source pooldoctor)" in ~/.bashrc,
    zsh_source in ~/.zshrc; fish: _POOLDOCTOR_COMPLETE=fish_source pooldoctor | source.
    """
    if quiet and verbose:
        raise UsageError("-q and -v both given", "choose one: -q for less, -v for more")
    context.obj = 0 if quiet else 2 if verbose else 1


def _set_verbosity(level: int) -> Callable[[click.Context, click.Parameter, bool], None]:
    """-q/-v after the command (``pooldoctor scan -q``), as before it: both set the root's level."""

    def callback(context: click.Context, _: click.Parameter, given: bool) -> None:
        root = context.find_root()
        if not given:
            return
        if root.obj not in (None, 1, level):
            raise UsageError("-q and -v both given", "choose one: -q for less, -v for more")
        root.obj = level

    return callback


def _verbosity_options(func: Any) -> Any:
    func = click.option(
        "--verbose",
        "-v",
        is_flag=True,
        expose_value=False,
        callback=_set_verbosity(2),
        help="More detail on stderr (as pooldoctor -v).",
    )(func)
    return click.option(
        "--quiet",
        "-q",
        is_flag=True,
        expose_value=False,
        callback=_set_verbosity(0),
        help="Only the report: no progress, no summary line (as pooldoctor -q).",
    )(func)


def _verbosity() -> int:
    """0 with -q, 2 with -v, 1 otherwise (and outside a command line: a test calling a helper)."""
    context = click.get_current_context(silent=True)
    level = context.find_root().obj if context is not None else None
    return 1 if level is None else int(level)


def _summary(outcome: str, output: str | None) -> None:
    """After ``--output``: one line on stderr, so a CI log shows what the file says (not -q)."""
    if output and _verbosity():
        click.echo(f"pooldoctor: {outcome}: report written to {output}", err=True)


class _Choices(click.Choice):
    """A ``click.Choice`` whose values are loaded when its option is first parsed, completed or
    shown in help: the modules that list them (reporters, verdicts) stay unimported otherwise."""

    def __init__(self, load: Callable[[], Iterable[str]]) -> None:
        self._load = load
        self._choices: tuple[str, ...] | None = None
        self.case_sensitive = True

    @property
    def choices(self) -> tuple[str, ...]:
        if self._choices is None:
            self._choices = tuple(self._load())
        return self._choices

    @choices.setter
    def choices(self, values: Iterable[str]) -> None:
        self._choices = tuple(values)


def _report_formats() -> list[str]:
    from pooldoctor.reporters import Format

    return [f.value for f in Format]


def _fail_on_choices() -> list[str]:
    from pooldoctor.core.verdict import FAIL_ON_CHOICES

    return list(FAIL_ON_CHOICES)


def _scan_formats() -> list[str]:
    from pooldoctor.reporters.scan import ScanFormat

    return [f.value for f in ScanFormat]


def _saved_formats() -> list[str]:
    from pooldoctor.commands import report as saved

    return sorted({f for formats in saved.FORMATS.values() for f in formats})


def _saved_fail_on() -> list[str]:
    from pooldoctor.commands import report as saved

    return list(dict.fromkeys(f for v in saved.FAIL_ON.values() for f in v))


OUTPUT_OPTION = click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False),
    help="Write the report to FILE instead of stdout.",
)


def _report_options(func: Any, fail_on: str = "leak") -> Any:
    for option in reversed(
        [
            click.option(
                "--format",
                "fmt",
                type=_Choices(_report_formats),
                help="Report format (default: from --output's extension, else text).",
            ),
            OUTPUT_OPTION,
            click.option(
                "--fail-on",
                type=_Choices(_fail_on_choices),
                default=fail_on,
                show_default=True,
                help="Exit 1 when the project's verdict is at or above this (unmeasured: also "
                "when nothing of the project's own was measured).",
            ),
            click.option(
                "--tasks",
                type=click.IntRange(2, 1000),
                default=12,
                show_default=True,
                help="Probe tasks per subject (a share of them fail on purpose), or runs of "
                "each --task.",
            ),
            click.option(
                "--task-timeout",
                type=click.FloatRange(0.5, 600),
                default=10.0,
                show_default=True,
                help="Seconds a task may run before it counts as hung.",
            ),
            click.option(
                "--jobs",
                "-j",
                type=click.IntRange(1, 16),
                default=2,
                show_default=True,
                help="Subjects measured at once (each in its own process).",
            ),
            click.option("--debug", is_flag=True, help="Show tracebacks and subject output."),
        ]
    ):
        func = option(func)
    return func


def _project_options(func: Any) -> Any:
    """The options that say which project, database and subjects to measure (check, simulate)."""
    for option in reversed(
        [
            click.option(
                "--settings",
                envvar="DJANGO_SETTINGS_MODULE",
                help="The project's settings module (default: $DJANGO_SETTINGS_MODULE).",
            ),
            click.option(
                "--pythonpath",
                multiple=True,
                type=click.Path(file_okay=False),
                help="A directory to add to sys.path (repeatable; the current one always is).",
            ),
            click.option(
                "--alias",
                default="default",
                show_default=True,
                help="The database alias to examine.",
            ),
            click.option(
                "--wrapper",
                "wrappers",
                multiple=True,
                metavar="MODULE:ATTR[()]",
                help="The project's decorator that runs an async function from sync code "
                "(repeatable; ATTR() calls a factory first). Also read from "
                "[tool.pooldoctor] wrappers in pyproject.toml.",
            ),
            click.option("--modes", help="Comma-separated built-in modes to run (default: all)."),
            click.option(
                "--database",
                metavar="URL|embedded",
                help="Connect to URL (or an ephemeral PostgreSQL) instead of the project's server, "
                "keeping its OPTIONS and pool settings.",
            ),
        ]
    ):
        func = option(func)
    return func


def _task_options(func: Any, where: str) -> Any:
    """--task, --args and --kwargs: the project's own tasks (check, simulate)."""
    for option in reversed(
        [
            click.option(
                "--task",
                "task_paths",
                multiple=True,
                metavar="DOTTED.PATH",
                help="RUNS THE PROJECT'S CODE FOR REAL: the project's own task (a Celery task or "
                "a sync function, e.g. mysite.tasks.refresh_prices), run --tasks times through "
                f"its own decorator, {where}, and judged like a wrapper (repeatable). Built-in "
                "modes run only if --modes names them. An async def that nothing wraps is run "
                "through each --wrapper.",
            ),
            click.option(
                "--args",
                "task_args",
                metavar="JSON",
                help="Positional arguments for every --task, as a JSON list (default []).",
            ),
            click.option(
                "--kwargs",
                "task_kwargs",
                metavar="JSON",
                help="Keyword arguments for every --task, as a JSON object (default {}).",
            ),
        ]
    ):
        func = option(func)
    return func


def _url_options(func: Any) -> Any:
    """--url and what a real request needs (check): the project's URLs through its application."""
    for option in reversed(
        [
            click.option(
                "--url",
                "urls",
                multiple=True,
                metavar="PATH",
                help="A URL path of the project's (e.g. /api/orders/?page=2), sent in-process "
                "through its ASGI application (or --wsgi) --requests times and judged like a "
                "task (repeatable). The request modes run beside it unless --modes says otherwise.",
            ),
            click.option("--method", default="GET", show_default=True, help="With --url."),
            click.option(
                "--header",
                "headers",
                multiple=True,
                metavar="'NAME: VALUE'",
                help="A request header for every --url (repeatable).",
            ),
            click.option("--data", metavar="TEXT|@FILE", help="The request body for every --url."),
            click.option(
                "--cookie",
                "cookies",
                multiple=True,
                metavar="NAME=VALUE",
                help="A cookie for every --url, e.g. an existing sessionid (repeatable).",
            ),
            click.option(
                "--user",
                metavar="PK",
                help="Send every --url as this user (by primary key): Django's get_user answers "
                "with it, so no session is created and nothing is written.",
            ),
            click.option(
                "--requests",
                "request_count",
                type=click.IntRange(1, 10000),
                default=12,
                show_default=True,
                help="Requests per URL and per request mode; a census follows each round.",
            ),
            click.option(
                "--concurrency",
                type=click.IntRange(1, 64),
                default=1,
                show_default=True,
                help="Requests sent at the same time, in each round.",
            ),
            click.option(
                "--asgi",
                metavar="MODULE:ATTR",
                help="The project's ASGI application (default: the asgi module next to the "
                "settings, else Django's get_asgi_application()).",
            ),
            click.option(
                "--wsgi",
                metavar="MODULE:ATTR",
                help="Send the requests through this WSGI application instead, served by "
                "--concurrency threads (the threaded case); 'default' for the wsgi module next "
                "to the settings.",
            ),
        ]
    ):
        func = option(func)
    return func


WEB_OPTIONS = ("urls", "method", "headers", "data", "cookies", "user", "request_count",
               "concurrency", "asgi", "wsgi")  # fmt: skip


ALLOW_WRITES = click.option(
    "--allow-writes",
    is_flag=True,
    help="Let the project's code write: open read-write sessions on every alias (otherwise each "
    "starts read-only, and statements that would lift that are refused; the embedded server's "
    "alias may always be written). Read-only sessions are the guard: the async ORM runs each "
    "query on an executor thread with its own connection, so a task's writes cannot be kept in "
    "one transaction and rolled back.",
)


@cli.command(epilog=EXIT_CODES_HELP)
@_verbosity_options
@_project_options
@click.option("--list-modes", is_flag=True, help="List the built-in modes and exit.")
@click.option(
    "--no-tracking",
    is_flag=True,
    help="Do not record checkout call stacks: verdicts stay the same, leak sites are not named.",
)
@functools.partial(
    _task_options,
    where="in-process as a worker runs it. With --database embedded the project's migrations "
    "run there first and the task may write; on any other database its sessions are "
    "read-only, so a task that writes fails (see --allow-writes)",
)
@_url_options
@ALLOW_WRITES
@_report_options
def check(list_modes: bool, no_tracking: bool, **kwargs: Any) -> int:
    """Run synthetic async ORM tasks through every mode and the project's own wrappers (or the
    project's own tasks, with --task), measure the pool after each task, and give each a verdict:
    leak, pinned or clean.

    The probe only reads. On your database every session starts with
    default_transaction_read_only, unless --allow-writes; the embedded one is thrown away after,
    so there sessions may write.
    """
    if list_modes:
        from pooldoctor.core.probes import all_modes

        for mode in all_modes():
            click.echo(f"{mode.name:34} {mode.summary}")
        return ExitCode.OK
    urls, web = _web_options(**{name: kwargs.pop(name) for name in WEB_OPTIONS})
    if urls:
        extras.require("httpx", "web", "check --url (its requests are sent with httpx)")
    return _check(**kwargs, tracking=not no_tracking, urls=urls, web=web)


def _web_options(
    *,
    urls: tuple[str, ...],
    method: str,
    headers: tuple[str, ...],
    data: str | None,
    cookies: tuple[str, ...],
    user: str | None,
    request_count: int,
    concurrency: int,
    asgi: str | None,
    wsgi: str | None,
) -> tuple[tuple[dict[str, Any], ...], dict[str, Any]]:
    """The requests ``--url`` sends (as the subject process reads them) and how they are sent."""
    from pooldoctor.hosts.web.common import Request

    if asgi and wsgi:
        raise UsageError("--asgi and --wsgi both given", "name one application")
    given = _given(("method", "headers", "data", "cookies", "user"))
    if given and not urls:
        raise UsageError(f"{', '.join(given)} only apply to --url", "add --url PATH")
    pairs: list[tuple[str, str]] = []
    for header in headers:
        name, colon, value = header.partition(":")
        if not colon or not name.strip() or " " in name.strip():
            raise UsageError(f"--header {header!r} is not 'NAME: VALUE'",
                             "for example --header 'Accept: application/json'")  # fmt: skip
        pairs.append((name.strip(), value.strip()))
    for cookie in cookies:
        if "=" not in cookie or not cookie.partition("=")[0].strip():
            raise UsageError(f"--cookie {cookie!r} is not NAME=VALUE", "for example sessionid=abc")
    if cookies:
        pairs.append(("Cookie", "; ".join(c.strip() for c in cookies)))
    body = data
    if data is not None and data.startswith("@"):
        try:
            body = Path(data[1:]).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--data {data}: cannot read {data[1:]!r}: {exc.__class__.__name__}",
                             "name a readable text file after the @") from None  # fmt: skip
    requests: list[dict[str, Any]] = []
    for url in dict.fromkeys(urls):
        if not url.startswith("/") or any(c.isspace() for c in url):
            raise UsageError(f"--url {url!r} is not a path", "for example --url /api/orders/")
        requests.append(Request(path=url, method=method.upper(), headers=tuple(pairs),
                                body=body, user=user).wire())  # fmt: skip
    app = None if wsgi == "default" else (wsgi or asgi)
    web = {"interface": "wsgi" if wsgi else "asgi", "app": app,
           "requests": request_count, "concurrency": concurrency}  # fmt: skip
    return tuple(requests), web


@cli.command(epilog=EXIT_CODES_HELP)
@_verbosity_options
@click.option(
    "--database",
    metavar="URL|embedded",
    default="embedded",
    show_default=True,
    help="Where to run the demo.",
)
@functools.partial(_report_options, fail_on="never")
def demo(**kwargs: Any) -> int:
    """Run check on the bundled leaking project (its wrapper follows the widely shared recipe),
    against an ephemeral PostgreSQL unless --database says otherwise."""
    project = DEMO
    if not (project / "mysite" / "settings.py").is_file():
        raise MissingExtraError(
            f"the demo project is missing from this installation ({project})",
            "reinstall pooldoctor: pip install --force-reinstall 'pooldoctor[embedded]'",
        )
    extras.require("celery", "celery", "pooldoctor demo (its project is a Celery recipe)")
    kwargs.update(
        settings="mysite.settings",
        pythonpath=(str(project),),
        alias="default",
        wrappers=("mysite.celeryapp:async_task()",),
        modes=None,
        cwd=str(project),
        # From where the user typed it: the measurement runs in the demo project's directory.
        output=os.path.abspath(kwargs["output"]) if kwargs["output"] else None,
    )
    # Installed in a project's virtualenv, the demo is under that project's pyproject.toml: its
    # [tool.pooldoctor] wrappers are not the demo's.
    return _check(**kwargs, read_config=False)


def _check(
    *,
    settings: str | None,
    pythonpath: tuple[str, ...],
    alias: str,
    wrappers: tuple[str, ...],
    modes: str | None,
    database: str | None,
    fmt: str | None,
    output: str | None,
    fail_on: str,
    tasks: int,
    task_timeout: float,
    jobs: int,
    debug: bool,
    cwd: str | None = None,
    tracking: bool = True,
    task_paths: tuple[str, ...] = (),
    task_args: str | None = None,
    task_kwargs: str | None = None,
    allow_writes: bool = False,
    urls: tuple[dict[str, Any], ...] = (),
    web: dict[str, Any] | None = None,
    read_config: bool = True,
) -> int:
    from pooldoctor.commands.check import CheckOptions, run_check, subject_count
    from pooldoctor.reporters import infer_format

    if not settings:
        raise UsageError(
            "no settings module", "pass --settings mysite.settings or set DJANGO_SETTINGS_MODULE"
        )
    call_args, call_kwargs = _task_arguments(task_paths, task_args, task_kwargs)
    cwd = cwd or os.getcwd()
    _check_writable(output)
    configured = config_list(Path(cwd), "wrappers") if read_config else []
    options = CheckOptions(
        settings=settings,
        alias=alias,
        pythonpath=tuple(os.path.abspath(p) for p in pythonpath),
        wrappers=tuple(dict.fromkeys([*wrappers, *configured])),
        modes=_modes(modes),
        tasks=tasks,
        database=database,
        task_timeout=task_timeout,
        jobs=jobs,
        cwd=cwd,
        debug=debug,
        tracking=tracking,
        task_paths=tuple(dict.fromkeys(task_paths)),
        task_args=call_args,
        task_kwargs=call_kwargs,
        allow_writes=allow_writes,
        urls=urls,
        web=web,
    )
    with _progress(subject_count(options)) as progress:
        report = run_check(options, progress=progress)
    return _emit(report, infer_format(output, fmt), output, fail_on)


def _task_arguments(
    task_paths: tuple[str, ...], task_args: str | None, task_kwargs: str | None
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if not task_paths and (task_args is not None or task_kwargs is not None):
        raise UsageError(
            "--args and --kwargs are a --task's arguments, and no --task was given",
            "for example --task mysite.tasks.refresh_prices --args '[42]'",
        )
    for option, text, example in (("--args", task_args, "'[42, \"EUR\"]'"),
                                  ("--kwargs", task_kwargs, "'{\"force\": true}'")):  # fmt: skip
        if text is not None and _json_depth(text) > JSON_DEPTH:
            raise UsageError(
                f"{option} nests more than {JSON_DEPTH} levels of lists and objects",
                f"pass the task's arguments flatter, for example {option} {example}",
            )
    from pooldoctor.core.project_tasks import parse_arguments

    return parse_arguments(task_args, task_kwargs)


# How deeply --args and --kwargs may nest: Python's JSON parser recurses once per level, and a
# task's arguments on a command line are never deep.
JSON_DEPTH = 32


def _json_depth(text: str) -> int:
    """How deeply a JSON text nests lists and objects, counted without parsing it (stops counting
    past :data:`JSON_DEPTH`)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > JSON_DEPTH:
                break
        elif char in "]}":
            depth -= 1
    return deepest


def _modes(modes: str | None) -> tuple[str, ...] | None:
    """``--modes``: the names given, or None (every mode) without the option; an empty list is a
    mistake, not "all"."""
    if modes is None:
        return None
    names = tuple(m.strip() for m in modes.split(",") if m.strip())
    if not names:
        from pooldoctor.core.probes import all_modes

        raise UsageError(
            f"--modes {modes!r} names no mode",
            f"name one or more of {', '.join(m.name for m in all_modes())}, separated by commas, "
            "or leave --modes out to run them all",
        )
    return names


def _check_broker_url(broker: str) -> None:
    """A malformed ``--broker`` URL is one line here, before kombu reads it (or raises from it)."""
    from urllib.parse import urlsplit

    from pooldoctor.core.project import mask_url

    for url in broker.split(";"):  # kombu's failover list
        if "://" not in url:
            continue  # kombu also takes a bare transport name
        try:
            problem = "port 0 is not a port" if urlsplit(url).port == 0 else ""
        except ValueError as exc:  # a port that is not a number from 0 to 65535, an unclosed [
            problem = str(exc)
        if problem:
            raise UsageError(
                f"--broker {mask_url(broker)!r} is malformed: {problem}",
                "use TRANSPORT://USER:PASSWORD@HOST:PORT/VHOST with PORT from 1 to 65535 and an "
                "IPv6 HOST in [brackets], or --broker embedded",
            )


@contextlib.contextmanager
def _progress(total: int) -> Iterator[Progress | None]:
    """A live line on stderr while subjects run, only when a person is watching (not with -q);
    with -v and no terminal, a line per subject measured."""
    if not _verbosity():
        yield None
        return
    if not sys.stderr.isatty():
        if _verbosity() < 2:
            yield None
            return
        measured: list[str] = []

        def line(subject: Subject, run: SubjectRun) -> None:
            measured.append(subject.name)
            click.echo(f"pooldoctor: measured {len(measured)} of {total}: {subject.name}",
                       err=True)  # fmt: skip

        yield line
        return
    from rich.console import Console

    console = Console(stderr=True)
    with console.status(f"measuring 0 of {total} subjects") as status:
        done: list[str] = []

        def advance(subject: Subject, run: SubjectRun) -> None:
            done.append(subject.name)
            status.update(f"measuring {len(done)} of {total} subjects (done: {subject.name})")

        yield advance


@contextlib.contextmanager
def _simulate_progress(unit: str) -> Iterator[Any]:
    """simulate's progress on stderr: a live bar per subject on a terminal (rich's own test, so
    FORCE_COLOR or TTY_COMPATIBLE=1 count as one), none with -q; with -v and no terminal, a line
    per tenth of each subject's tasks."""
    from rich.console import Console

    level, screen = _verbosity(), Console(stderr=True)
    if level and screen.is_terminal:
        from pooldoctor.reporters.simulate import live_progress

        with live_progress(screen, unit) as advance:
            yield advance
    elif level > 1:

        def line(subject: str, done: int, total: int) -> None:
            if done == total or done % max(1, total // 10) == 0:
                click.echo(f"pooldoctor: {subject}: {unit} {done}/{total}", err=True)

        yield line
    else:
        yield None


def _emit(
    report: Report | SimulateReport | InspectReport, fmt: str, output: str | None, fail_on: str
) -> int:
    """Render the report where it goes and return the exit code its command gives."""
    from pooldoctor.core import verdict
    from pooldoctor.reporters import render

    color = output is None and fmt == "text" and sys.stdout.isatty()
    text = render(report, fmt, fail_on=fail_on, width=None if color else 100, color=color)
    _write_report(text, output)
    _summary(report.verdict.value, output)
    return ExitCode.FAILED if verdict.report_fails(report, fail_on) else ExitCode.OK


def _check_writable(output: str | None) -> None:
    """Before minutes of measuring, not after."""
    if output and not os.access(Path(output).resolve().parent, os.W_OK):
        raise UsageError(
            f"cannot write the report to {output}: its directory is missing or read-only",
            "pass an --output path in an existing, writable directory",
        )


def _write_report(text: str, output: str | None) -> None:
    """The report to ``output``, or to stdout without one."""
    if not output:
        click.echo(text, nl=not text.endswith("\n"))
        return
    try:
        Path(output).write_text(text)
    except OSError as exc:
        raise UsageError(
            f"cannot write the report to {output}: {exc.strerror}",
            "pass an --output path in an existing, writable directory",
        ) from exc


@cli.command(epilog=EXIT_CODES_HELP)
@_verbosity_options
@_project_options
@click.option(
    "--app",
    metavar="MODULE:ATTR",
    help="The project's Celery app (default: one built from the settings' CELERY_*); with "
    "--server, its WSGI or ASGI application (default: the wsgi/asgi module next to the settings).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 32),
    default=4,
    show_default=True,
    help="Worker concurrency (-c); with --server, the server's worker processes.",
)
@click.option(
    "--runner",
    default="celery",
    show_default=True,
    metavar="NAME",
    help="The task runner whose real workers run the tasks: celery, django-tasks, rq, "
    "dramatiq, huey, django-q.",
)
@click.option(
    "--pool",
    "worker_pool",
    default=None,
    metavar="KIND",
    help="The kind of worker: Celery's pool (prefork [default], threads, solo, gevent); "
    "rq: fork [default], simple, pool (rqworker-pool); dramatiq: processes [default], threads; "
    "huey: thread [default], process; django-tasks: db_worker [default], db_async_worker; "
    "django-q: cluster [default].",
)
@click.option(
    "--prefork",
    is_flag=True,
    help="The forking kind of worker (Celery's prefork, RQ's fork...) with the parent opening "
    "the pool before the fork (the hazardous real-world case).",
)
@click.option("--no-warm-parent", is_flag=True, help="With --prefork: do not warm the parent.")
@click.option(
    "--broker",
    default="embedded",
    show_default=True,
    metavar="URL|embedded",
    help="embedded: kombu's filesystem transport in a temporary directory.",
)
@click.option(
    "--django-fixup",
    type=click.Choice(["auto", "on", "off"]),
    default="auto",
    show_default=True,
    help="Install Celery's Django fix-up (auto: as the app does).",
)
@click.option(
    "--kill-child-at",
    type=int,
    default=None,
    hidden=True,
    help="Chaos: SIGKILL the worker child running task N.",
)
@click.option(
    "--server",
    type=click.Choice(["gunicorn", "uvicorn", "daphne"]),
    help="Serve the project's WSGI/ASGI application (--app) with this real server on a loopback "
    "port instead of running Celery workers, and send it real HTTP requests.",
)
@click.option(
    "--preload",
    is_flag=True,
    help="With --server gunicorn: import the application in the master before the fork.",
)
@click.option(
    "--worker-class",
    type=click.Choice(["sync", "gthread", "uvicorn"]),
    default="sync",
    show_default=True,
    help="With --server gunicorn: its worker class (uvicorn: uvicorn's ASGI worker).",
)
@click.option(
    "--url",
    "urls",
    multiple=True,
    metavar="PATH",
    help="With --server: a URL path of the project's to measure under load (repeatable), "
    "besides the built-in echo.",
)
@click.option(
    "--requests",
    "request_count",
    type=click.IntRange(1, 100000),
    default=120,
    show_default=True,
    help="With --server: requests per subject.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    default=8,
    show_default=True,
    help="With --server: requests in flight at once.",
)
@click.option(
    "--no-tracking",
    is_flag=True,
    help="Do not record checkout call stacks: verdicts stay the same, leak sites are not named.",
)
@functools.partial(
    _task_options,
    where="sent through the broker to the real workers (its sessions are read-only, except on "
    "--database embedded), with crossed replies measured on the task's own connection",
)
@ALLOW_WRITES
@_report_options
def simulate(**kwargs: Any) -> int:
    """Start real Celery workers on the project's own app, feed them probe tasks, and report per
    worker process what happened to the pool: inherited connections, crossed replies, lost and
    pinned connections, churn, errors. Runs the project's Celery configuration for real."""
    settings = kwargs["settings"]
    if not settings:
        raise UsageError("no settings module", "pass --settings or set DJANGO_SETTINGS_MODULE")
    if kwargs["server"]:
        return _simulate_server(kwargs)
    _refuse_server_options(kwargs)
    if kwargs["runner"] == "celery":
        extras.require("celery", "celery", "simulate (real Celery workers)")
    else:
        given = _given(("django_fixup", "app"))
        if given:
            raise UsageError(f"{', '.join(given)} apply to Celery workers, not to --runner "
                             f"{kwargs['runner']}", "leave them out")  # fmt: skip
    from pooldoctor.commands.check import CheckOptions
    from pooldoctor.commands.simulate import SimulateOptions, run_simulate
    from pooldoctor.hosts.fleet import FleetOptions
    from pooldoctor.reporters import infer_format

    cwd = os.getcwd()
    paths = tuple(dict.fromkeys(kwargs["task_paths"]))
    call_args, call_kwargs = _task_arguments(paths, kwargs["task_args"], kwargs["task_kwargs"])
    _check_broker_url(kwargs["broker"])
    pool = _worker_pool(kwargs["runner"], kwargs["worker_pool"], kwargs["prefork"])
    options = SimulateOptions(
        check=CheckOptions(
            settings=settings, alias=kwargs["alias"],
            pythonpath=tuple(os.path.abspath(p) for p in kwargs["pythonpath"]),
            wrappers=tuple(dict.fromkeys([*kwargs["wrappers"], *_pyproject_wrappers(Path(cwd))])),
            modes=_modes(kwargs["modes"]),
            tasks=kwargs["tasks"], database=kwargs["database"],
            task_timeout=kwargs["task_timeout"], jobs=kwargs["jobs"], cwd=cwd,
            debug=kwargs["debug"], task_paths=paths, task_args=call_args,
            task_kwargs=call_kwargs, allow_writes=kwargs["allow_writes"],
        ),
        fleet=FleetOptions(
            pool=pool, workers=kwargs["workers"], tasks=kwargs["tasks"],
            warm_parent=kwargs["prefork"] and not kwargs["no_warm_parent"],
            django_fixup=kwargs["django_fixup"], broker=kwargs["broker"], app=kwargs["app"],
            task_timeout=kwargs["task_timeout"], kill_child_at=kwargs["kill_child_at"],
            tracking=not kwargs["no_tracking"], runner=kwargs["runner"],
        ),
    )  # fmt: skip
    output = kwargs["output"]
    _check_writable(output)
    with _simulate_progress("task") as progress:
        report = run_simulate(options, progress)
    return _emit(report, infer_format(output, kwargs["fmt"]), output, kwargs["fail_on"])


CELERY_POOLS = ("prefork", "threads", "solo", "gevent")


def _worker_pool(runner: str, pool: str | None, prefork: bool) -> str:
    """The kind of worker ``--pool`` and ``--prefork`` ask for, for the runner (checked by the
    runner's host for the other runners, which is where their kinds are known)."""
    if runner == "celery":
        if pool is not None and pool not in CELERY_POOLS:
            raise UsageError(f"--pool {pool!r} is not a Celery pool",
                             f"choose one of {', '.join(CELERY_POOLS)}")  # fmt: skip
        return "prefork" if prefork or pool is None else pool
    from pooldoctor.hosts import runner_host

    try:
        host = runner_host(runner)
    except LookupError as exc:
        raise UsageError(str(exc), "choose one of them with --runner NAME") from exc
    if prefork:
        forking = [kind for kind in host.pools if kind in host.forking]
        if not forking:
            raise UsageError(f"--prefork: no kind of {host.title} worker forks a process "
                             "that loaded the project",
                             f"leave it out for --runner {runner}")  # fmt: skip
        if pool is not None and pool not in host.forking:
            raise UsageError(f"--prefork asks for a forking worker, --pool {pool} does not fork",
                             f"use --pool {forking[0]}, or leave --prefork out")  # fmt: skip
        return pool or forking[0]
    return pool or host.pools[0]


# simulate's options that only Celery workers use, and those that only --server uses.
CELERY_ONLY = ("runner", "worker_pool", "prefork", "no_warm_parent", "broker", "django_fixup",
               "kill_child_at", "wrappers", "modes", "task_paths", "task_args", "task_kwargs",
               "tasks")  # fmt: skip
SERVER_ONLY = ("preload", "worker_class", "urls", "request_count", "concurrency")


def _given(names: tuple[str, ...]) -> list[str]:
    """The options among ``names`` given on the command line (not left at their default)."""
    context = click.get_current_context()
    given = []
    for name in names:
        source = context.get_parameter_source(name)
        if source is not None and source is not click.core.ParameterSource.DEFAULT:
            option = next(p for p in context.command.params if p.name == name)
            given.append(option.opts[0])
    return given


def _refuse_server_options(kwargs: dict[str, Any]) -> None:
    given = _given(SERVER_ONLY)
    if given:
        raise UsageError(f"{', '.join(given)} only apply with --server",
                         "add --server gunicorn|uvicorn|daphne, or leave them out")  # fmt: skip


def _simulate_server(kwargs: dict[str, Any]) -> int:
    """``simulate --server``: the project's web application on a real server."""
    from pooldoctor.commands.check import CheckOptions
    from pooldoctor.commands.simulate_server import ServerSimulateOptions, run_server_simulation
    from pooldoctor.hosts.servers import ServerOptions
    from pooldoctor.reporters import infer_format

    given = _given(CELERY_ONLY)
    if given:
        raise UsageError(f"{', '.join(given)} apply to Celery workers, not to --server",
                         "leave them out, or drop --server")  # fmt: skip
    if kwargs["server"] != "gunicorn":
        wrong = _given(("preload", "worker_class"))
        if wrong:
            raise UsageError(f"{', '.join(wrong)} apply to --server gunicorn only",
                             f"leave them out for --server {kwargs['server']}")  # fmt: skip
    for url in kwargs["urls"]:
        if not url.startswith("/"):
            raise UsageError(f"--url {url!r} is not a path", "for example --url /api/orders/")
    output = kwargs["output"]
    _check_writable(output)
    options = ServerSimulateOptions(
        check=CheckOptions(
            settings=kwargs["settings"], alias=kwargs["alias"],
            pythonpath=tuple(os.path.abspath(p) for p in kwargs["pythonpath"]),
            database=kwargs["database"], task_timeout=kwargs["task_timeout"],
            jobs=kwargs["jobs"], cwd=os.getcwd(), debug=kwargs["debug"],
            tracking=not kwargs["no_tracking"], allow_writes=kwargs["allow_writes"],
        ),
        server=ServerOptions(
            server=kwargs["server"], app=kwargs["app"], workers=kwargs["workers"],
            preload=kwargs["preload"], worker_class=kwargs["worker_class"],
            urls=tuple(dict.fromkeys(kwargs["urls"])), requests=kwargs["request_count"],
            concurrency=kwargs["concurrency"], task_timeout=kwargs["task_timeout"],
            tracking=not kwargs["no_tracking"],
        ),
    )  # fmt: skip
    with _simulate_progress("request") as progress:
        report = run_server_simulation(options, progress)
    return _emit(report, infer_format(output, kwargs["fmt"]), output, kwargs["fail_on"])


@cli.command(epilog=EXIT_CODES_HELP)
@_verbosity_options
@click.option(
    "--app",
    metavar="MODULE:ATTR",
    help="The project's Celery app (its broker is the one asked), imported from the current "
    "directory.",
)
@click.option(
    "--runner",
    default="celery",
    show_default=True,
    metavar="NAME",
    help="The task runner: celery (asked over its broker), or rq, dramatiq, huey, django-tasks, "
    "django-q "
    "(their workers' snapshot files on this machine are read; install with "
    "pooldoctor.<runner>.install()).",
)
@click.option(
    "--settings",
    envvar="DJANGO_SETTINGS_MODULE",
    help="The project's settings module, for the server's view (default: "
    "$DJANGO_SETTINGS_MODULE, or what the app's module sets).",
)
@click.option(
    "--pythonpath",
    multiple=True,
    type=click.Path(file_okay=False),
    help="A directory to add to sys.path (repeatable; the current one always is).",
)
@click.option("--alias", default="default", show_default=True, help="The database alias.")
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 60),
    default=2.0,
    show_default=True,
    help="Seconds to wait for the workers' answers; a worker that has not answered by then is "
    "reported as not answering.",
)
@click.option(
    "--destination",
    metavar="NODE[,NODE...]",
    help="Ask only these worker nodes (e.g. leaky@host1,clean@host2); default: every worker.",
)
@click.option(
    "--watch",
    type=click.FloatRange(0.5, 3600),
    metavar="SECONDS",
    help="Ask again every SECONDS until Ctrl-C: a live table on a terminal, one report per "
    "interval otherwise.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "junit", "github", "html", "openmetrics"]),
    help="Report format (default: from --output's extension, else text); openmetrics prints "
    "the fleet's census as Prometheus metrics.",
)
@OUTPUT_OPTION
@click.option(
    "--fail-on",
    type=click.Choice(["leak", "pinned", "never"]),
    default="leak",
    show_default=True,
    help="Exit 1 when a worker's verdict is at or above this (a worker that could not be "
    "inspected is an error, which fails anything but never).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def inspect(**kwargs: Any) -> int:
    """Ask every live worker of a running Celery fleet, over the app's own broker, for its
    census (installed with pooldoctor.celery.install(app)): per worker process, pool stats, lost
    slots, pinned connections with their holder threads and age, churn, inherited connections;
    and match them to the server's pg_stat_activity. Read-only: nothing is opened, closed or
    reset in the workers, and the one server session pooldoctor opens is read-only."""
    runner = kwargs["runner"]
    if runner == "celery":
        extras.require("celery", "celery", "inspect (it asks Celery workers)")
        if not kwargs["app"]:
            raise UsageError("inspect needs --app MODULE:ATTR, the project's Celery app",
                             "for example --app mysite.celery:app, or --runner NAME for "
                             "another task runner")  # fmt: skip
    elif kwargs["app"]:
        raise UsageError(f"--app is for Celery, not --runner {runner}",
                         "leave it out: the runner's workers on this machine are read")  # fmt: skip
    from pooldoctor.commands.inspect import InspectOptions, inspect_once, load
    from pooldoctor.hosts.celery.control import parse_destination
    from pooldoctor.reporters import infer_format

    options = InspectOptions(
        app=kwargs["app"] or "",
        runner=runner,
        settings=kwargs["settings"],
        pythonpath=tuple(os.path.abspath(p) for p in kwargs["pythonpath"]),
        alias=kwargs["alias"],
        timeout=kwargs["timeout"],
        destination=parse_destination(kwargs["destination"]),
        cwd=os.getcwd(),
    )
    output, fail_on = kwargs["output"], kwargs["fail_on"]
    fmt = infer_format(output, kwargs["fmt"])
    _check_writable(output)
    target = load(options)
    if kwargs["watch"] is not None:
        _watch(lambda: inspect_once(target, options), kwargs["watch"], fmt, output, fail_on)
    return _emit(inspect_once(target, options), fmt, output, fail_on)


def _watch(ask: Any, interval: float, fmt: str, output: str | None, fail_on: str) -> None:
    """Until Ctrl-C (which main() turns into exit 130): a live table on a terminal, else one
    report per interval."""
    from rich.console import Console

    from pooldoctor.commands.watch import watch
    from pooldoctor.reporters import render

    def emit(report: Any) -> None:
        _write_report(render(report, fmt, fail_on=fail_on, width=100), output)
        sys.stdout.flush()

    terminal = output is None and fmt == "text" and sys.stdout.isatty()
    watch(ask, interval, emit, live=Console() if terminal else None)


def _pyproject_wrappers(directory: Path) -> list[str]:
    return _config_list(directory, "wrappers")


def _config_list(directory: Path, key: str) -> list[str]:
    """A list of strings from ``[tool.pooldoctor]`` in the nearest pyproject.toml upward."""
    return config_list(directory, key)


@cli.command(epilog=EXIT_CODES_HELP)
@_verbosity_options
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--select", default="", help="Comma-separated check codes or prefixes to run.")
@click.option("--ignore", default="", help="Comma-separated check codes or prefixes to skip.")
@click.option("--exclude", multiple=True, help="A glob of paths to leave out (repeatable).")
@click.option("--list-checks", is_flag=True, help="List every check and exit.")
@click.option(
    "--max-file-size",
    "max_size",
    metavar="SIZE",
    help="Skip (and list) files larger than SIZE: bytes, or 500k, 2M (default 1M, or "
    "[tool.pooldoctor] max-file-size).",
)
@click.option(
    "--format",
    "fmt",
    type=_Choices(_scan_formats),
    help="Report format (default: from --output's name: .sarif, .xml for junit, "
    "gl-code-quality-report.json or *.gitlab.json for gitlab, .json; else text).",
)
@OUTPUT_OPTION
@click.option(
    "--fail-on",
    type=click.Choice(["info", "warning", "error", "never"]),
    default="warning",
    show_default=True,
    help="Exit 1 when a finding of this severity or worse is present.",
)
def scan(
    paths: tuple[Path, ...],
    select: str,
    ignore: str,
    exclude: tuple[str, ...],
    list_checks: bool,
    max_size: str | None,
    fmt: str | None,
    output: str | None,
    fail_on: str,
) -> int:
    """Read the project's source and settings (never importing or running them) and report the
    ways of running async ORM code and configuring pools and workers that leak or break.

    Suppress one line with a comment: # pooldoctor: ignore[PD303]. Defaults for --select,
    --ignore and --exclude come from [tool.pooldoctor] select/ignore/exclude in the nearest
    pyproject.toml upward (exclude globs relative to its folder).
    """
    from pooldoctor.commands.scan import max_file_size, run_scan, select_checks
    from pooldoctor.reporters import render
    from pooldoctor.reporters.scan import infer_format as infer_scan_format

    root = Path.cwd()
    codes = [c.strip() for c in select.split(",") if c.strip()] or _config_list(root, "select")
    skipped = [c.strip() for c in ignore.split(",") if c.strip()] or _config_list(root, "ignore")
    checks = select_checks(codes, skipped)
    if list_checks:
        for check in checks:
            click.echo(f"{check.code}  {check.severity.value:7}  {check.name}: {check.summary}")
        return ExitCode.OK
    limit = max_file_size(max_size, root)
    _check_writable(output)
    excluded = [*exclude, *config_globs(root, "exclude")]
    result = run_scan(root, list(paths), checks, excluded, limit)
    fmt = infer_scan_format(output, fmt).value
    text = render(result, fmt, checks=checks, fail_on=fail_on)
    _write_report(text, output)
    if _verbosity() > 1 and (output or fmt != "text"):  # the text report lists them itself
        for file in result.skipped:
            click.echo(f"pooldoctor: skipped {file.path} ({file.reason.value}): {file.detail}",
                       err=True)  # fmt: skip
    count = len(result.findings)
    _summary(f"{count} finding{'' if count == 1 else 's'} in {result.files_scanned} files", output)
    return ExitCode.FAILED if result.reaches(fail_on) else ExitCode.OK


@cli.command(epilog=EXIT_CODES_HELP)
@_verbosity_options
@click.argument("saved_report", metavar="SAVED.json")
@click.option(
    "--format",
    "fmt",
    type=_Choices(_saved_formats),
    help="Report format (default: from --output's extension, else text); sarif and gitlab are "
    "for scan reports.",
)
@OUTPUT_OPTION
@click.option(
    "--fail-on",
    type=_Choices(_saved_fail_on),
    help="As for the command that wrote the report: leak|pinned|never for check and simulate "
    "(default leak), info|warning|error|never for scan (default warning).",
)
def report(saved_report: str, fmt: str | None, output: str | None, fail_on: str | None) -> int:
    """Render a report saved with --format json again, in any format, without measuring anything
    (SAVED.json may be - for standard input). The exit code follows --fail-on as for the command
    that wrote the report, so CI can gate on a saved report."""
    from pooldoctor.commands import report as saved

    loaded = saved.load(saved_report)
    fmt, fail_on = loaded.options(fmt, output, fail_on)
    _check_writable(output)
    color = output is None and fmt == "text" and sys.stdout.isatty()
    _write_report(loaded.render(fmt, fail_on, width=None if color else 100, color=color), output)
    _summary(loaded.outcome, output)
    return ExitCode.FAILED if loaded.fails(fail_on) else ExitCode.OK


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Entry point: returns the exit code instead of raising SystemExit."""
    # CI cancellation and `timeout` send SIGTERM, a closed terminal SIGHUP: clean up as for Ctrl-C
    # (subject processes run in their own sessions and would otherwise outlive pooldoctor).
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        result = cli.main(args=args, prog_name="pooldoctor", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return ExitCode.USAGE
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo(
            "pooldoctor: interrupted; subject processes and temporary files removed", err=True
        )
        return ExitCode.INTERRUPTED
    except PooldoctorError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"pooldoctor: error: {exc}", err=True)
        return int(exc.exit_code)
    except Exception:
        traceback.print_exc()
        click.echo("pooldoctor: internal error (above); please report it", err=True)
        return ExitCode.CANNOT_RUN
    return int(result) if isinstance(result, int) else ExitCode.OK
