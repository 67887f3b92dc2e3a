"""A live progress line for flow runs that take more than a second.

While a flow run goes on for longer than `DELAY` and stderr is a terminal, one line at the
bottom of the terminal shows its task runs: done out of registered, failed, running, the
rate and the time left. It is drawn with `rich` (imported only when a line is shown) from
the engine's own counters (`_core.Engine.progress`, a few atomic loads), read a few times a
second by one monitor thread, which sleeps with the GIL released: no Python runs per task
run. A flow run costs the line a list append and a removal; the monitor is started by the
first watched flow run and exits when none has been watched for `IDLE_EXIT` seconds. When
the flow run ends, its line is erased before its last log line is written, so what stays
on screen is the usual log lines (a map's summary line, `Finished in state ...`).

While the line is shown, `sys.stderr` (and `sys.stdout`, when it is the same terminal)
go through rich, which prints each line written to them above the progress line and
redraws it below: log lines and prints are never cut by it.

`FERROFLOW_PROGRESS`: `auto` (the default: on when stderr is a terminal), `on` (also when
it is not: escape sequences and all, for tests and for terminals Python does not
recognise), `off`.

A subflow's task runs count in the line of the flow run it runs under (one line, never
two); two flow runs at once in different threads take turns: the line shows one of them.
"""

from __future__ import annotations

import atexit
import math
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from ferroflow.logging import get_logger

__all__ = ["ENV", "Counts", "Watch", "describe", "mode", "watch"]

ENV = "FERROFLOW_PROGRESS"
_MODES = ("auto", "on", "off")

#: A flow run's line appears once it has run this long (seconds).
DELAY = 1.0
#: How often the line is redrawn (seconds).
INTERVAL = 0.2
#: The rate is measured over the last this many seconds.
RATE_WINDOW = 3.0
#: How long ending a flow run waits for its line to be erased (seconds).
_ERASE_TIMEOUT = 2.0
_BAR_WIDTH = 20
_MIN_BAR = 8


class _Engine(Protocol):
    def progress(self) -> tuple[int, int, int, int]: ...


class Counts(NamedTuple):
    """Task runs of a flow run (and its subflows) by how far they have got."""

    registered: int = 0
    done: int = 0
    failed: int = 0
    running: int = 0

    def plus(self, other: Counts) -> Counts:
        return Counts(*(a + b for a, b in zip(self, other, strict=True)))


_warned: set[str] = set()


def mode() -> str:
    """`FERROFLOW_PROGRESS` as one of `auto`, `on`, `off`; an unknown value is warned
    about (once) and read as `auto`."""
    raw = os.environ.get(ENV, "")
    value = raw.strip().lower()
    if value in _MODES:
        return value
    if value == "":
        return "auto"
    if raw not in _warned:
        _warned.add(raw)
        get_logger().warning(f"{ENV}={raw!r} is not one of 'auto', 'on', 'off'; using 'auto'")
    return "auto"


def _isatty(stream: Any) -> bool:
    try:
        return stream is not None and bool(stream.isatty())
    except (AttributeError, OSError, ValueError):
        return False


def _stdout_shares_the_terminal() -> bool:
    """Whether stdout is the terminal stderr is (prints then go around the line too)."""
    if not (_isatty(sys.stdout) and _isatty(sys.stderr)):
        return False
    try:
        return os.ttyname(sys.stdout.fileno()) == os.ttyname(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):
        return True  # no ttyname (Windows): two terminals at once are rare enough


# -- what the line says -----------------------------------------------------------------


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def _per_second(rate: float) -> str:
    for limit, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if rate >= limit:
            value = rate / limit
            return f"{value:.1f}{unit}/s" if value < 10 else f"{value:.0f}{unit}/s"
    return f"{rate:.1f}/s" if rate < 10 else f"{rate:.0f}/s"


def _bar(done: int, registered: int, width: int) -> tuple[str, str]:
    """The bar's finished and unfinished parts, in half cells; told apart by their
    lines as well as their colours (a terminal may show no colour: `NO_COLOR`)."""
    halves = width * 2 * done // registered if registered else 0
    full, half = divmod(halves, 2)
    finished = "━" * full + ("╸" if half else "")
    return finished, "─" * (width - len(finished))


def describe(
    name: str, counts: Counts, elapsed: float, rate: float | None, width: int | None = None
) -> list[tuple[str, str]]:
    """The line as (text, style) parts: a bar, runs done out of registered, failed,
    running, the rate of runs ending (per second), the time left at that rate and the
    time so far. To fit `width`, the time so far goes, then the bar narrows (down to
    `_MIN_BAR` cells), then it goes, then the words `Flow run`, then the name (the
    terminal cuts what is still too long)."""
    registered, done, failed, running = counts
    head = (f"Flow run {name!r} ", "bold")
    since = (f" · {_clock(elapsed)} elapsed", "")
    if registered == 0:
        return [head, ("no task runs yet", "dim"), since]
    total = f"{registered:,}"
    counted = [
        # (`done` as wide as the total: the line does not shift as it grows)
        (f"{100 * done // registered:>3d}% {done:>{len(total)},}/{total} task runs", ""),
        (f" · {failed:,} failed", "red" if failed else ""),
        (f" · {running:,} running", ""),
    ]
    if rate is not None:
        counted.append((f" · {_per_second(rate)}", ""))
    if rate and done < registered:
        counted.append((f" · ETA {_clock(math.ceil((registered - done) / rate))}", "cyan"))
    if width is None:
        width = sys.maxsize
    for tail, least in (([*counted, since], _BAR_WIDTH), (counted, _BAR_WIDTH), (counted, _MIN_BAR)):
        room = width - _length([head, *tail]) - 1
        if room >= least:
            finished, unfinished = _bar(done, registered, min(room, _BAR_WIDTH))
            return [head, (finished, "bar.complete"), (unfinished, "bar.back"), (" ", ""), *tail]
    for shorter in ([head, *counted], [(f"{name!r}", "bold"), *counted]):
        if _length(shorter) <= width:
            return shorter
    return counted


def _length(parts: list[tuple[str, str]]) -> int:
    return sum(len(text) for text, _ in parts)


class _Rate:
    """Runs ending per second over the last `RATE_WINDOW` seconds."""

    def __init__(self, started: float) -> None:
        self._samples: deque[tuple[float, int]] = deque([(started, 0)])

    def add(self, now: float, done: int) -> float | None:
        samples = self._samples
        samples.append((now, done))
        while len(samples) > 2 and now - samples[1][0] >= RATE_WINDOW:
            samples.popleft()
        then, done_then = samples[0]
        if now - then < 0.05:
            return None
        return max(0, done - done_then) / (now - then)


# -- the thread that draws it -----------------------------------------------------------

#: Root flow runs going on (oldest first), whose line the monitor may draw.
_roots: list[Watch] = []
#: Guards `_roots`, `_watches`, each watch's `ended` and `on_screen`, and `_monitor`; the
#: monitor sleeps on it.
_cond = threading.Condition()
#: The thread that draws the line: one in the process, started by the first watched
#: flow run; it exits once no flow run has been watched for `IDLE_EXIT` seconds (a
#: thread per flow run would cost each run its start: ~0.1 ms, measured).
_monitor: threading.Thread | None = None
IDLE_EXIT = 2.0
#: Every watch whose flow run is going on, by the id of each flow run counted in it
#: (the root's and its subflows').
_watches: dict[Any, Watch] = {}
#: rich could not be imported (said once).
_no_rich = False


class Watch:
    """One root flow run's progress: the engines counted in it (its own and its
    subflows'); the monitor draws its line once the run has lasted `DELAY`."""

    def __init__(self, name: str, engine: _Engine, *, force_terminal: bool) -> None:
        self.name = name
        self.started = time.monotonic()
        self.force_terminal = force_terminal
        self._engines: list[_Engine] = [engine]
        self._retired = Counts()
        self._lock = threading.Lock()
        #: The flow run ended (under `_cond`).
        self.ended = False
        #: The monitor took it to draw (under `_cond`): ending it then waits for `erased`.
        self.on_screen = False
        self.erased = threading.Event()
        #: Whether the line was ever drawn (for tests).
        self.shown = False

    # counting

    def add(self, engine: _Engine) -> None:
        """A subflow's engine: its runs count here until it ends."""
        with self._lock:
            self._engines.append(engine)

    def retire(self, engine: _Engine) -> None:
        """A subflow ended: its final counts stay in the total, its engine goes."""
        with self._lock:
            for index, known in enumerate(self._engines):
                if known is engine:
                    del self._engines[index]
                    self._retired = self._retired.plus(Counts(*engine.progress()))
                    return

    def counts(self) -> Counts:
        with self._lock:
            total = self._retired
            for engine in self._engines:
                total = total.plus(Counts(*engine.progress()))
            return total

    # its life

    def begin(self) -> None:
        global _monitor
        with _cond:
            _roots.append(self)
            if _monitor is None:
                _monitor = threading.Thread(target=_monitor_loop, name="ferroflow-progress", daemon=True)
                _monitor.start()
            # (No wake-up: the monitor looks every INTERVAL. Waking it per flow run would
            # cost each run a switch of the GIL.)

    def end(self) -> None:
        """The flow run ended: if its line is on screen, it is erased before this
        returns. Idempotent."""
        with _cond:
            if self.ended:
                return
            self.ended = True
            if self in _roots:
                _roots.remove(self)
            drawn = self.on_screen
            if drawn:
                _cond.notify_all()  # erase it now
        if drawn:
            self.erased.wait(_ERASE_TIMEOUT)


class _Line:
    """A watch's line on screen: rich's live display, with stderr (and stdout, when it
    is the same terminal) going through it while it is shown."""

    def __init__(self, watch: Watch) -> None:
        from rich.console import Console
        from rich.live import Live

        self.watch = watch
        self.console = Console(
            stderr=True,
            force_terminal=True if watch.force_terminal else None,
            # What goes through it (log lines, prints) is written as it is: no markup,
            # emoji codes or highlighting, and no wrapping (the terminal wraps).
            markup=False,
            emoji=False,
            highlight=False,
            soft_wrap=True,
        )
        self.rate = _Rate(watch.started)
        self.live = Live(
            self.render(),
            console=self.console,
            auto_refresh=False,
            transient=True,
            redirect_stdout=_stdout_shares_the_terminal(),
            redirect_stderr=True,
        )
        self.live.start(refresh=True)
        watch.shown = True

    def render(self) -> Any:
        from rich.text import Text

        now = time.monotonic()
        counts = self.watch.counts()
        rate = self.rate.add(now, counts.done)
        line = Text(no_wrap=True, overflow="ellipsis", end="")
        for text, style in describe(self.watch.name, counts, now - self.watch.started, rate, self.console.width):
            line.append(text, style or None)
        return line

    def refresh(self) -> None:
        self.live.update(self.render(), refresh=True)

    def close(self) -> None:
        try:
            self.live.stop()
        finally:
            self.watch.erased.set()


def _open(watch: Watch) -> _Line | None:
    global _no_rich
    try:
        return _Line(watch)
    except ImportError:
        if not _no_rich:
            _no_rich = True
            get_logger().warning(f"rich is not installed: no progress line ({ENV})")
    except Exception as exc:
        get_logger().warning(f"The progress line could not be drawn: {type(exc).__name__}: {exc}")
    watch.erased.set()
    return None


def _monitor_loop() -> None:
    """Draws the line of the oldest root flow run that has lasted `DELAY`, refreshed
    every `INTERVAL`, and erases it when that run ends. Between looks it sleeps, the GIL
    released; it exits once no flow run has been watched for `IDLE_EXIT` seconds."""
    global _monitor
    line: _Line | None = None
    busy_at = time.monotonic()
    try:
        while True:
            with _cond:
                now = time.monotonic()
                closing = line if line is not None and line.watch.ended else None
                opening = None
                if closing is not None:
                    line = None
                if line is None:
                    for watch in _roots:
                        if not watch.on_screen and now - watch.started >= DELAY:
                            watch.on_screen = True
                            opening = watch
                            break
            if closing is not None:
                closing.close()
            if opening is not None:
                line = _open(opening)
            elif line is not None:
                try:
                    line.refresh()
                except Exception as exc:
                    get_logger().warning(f"The progress line stopped: {type(exc).__name__}: {exc}")
                    line.close()
                    line = None
            with _cond:
                if line is not None and line.watch.ended:
                    continue  # erase it at once
                now = time.monotonic()
                if _roots or line is not None:
                    busy_at = now
                elif now - busy_at >= IDLE_EXIT:
                    _monitor = None
                    return
                _cond.wait(INTERVAL)
    finally:
        if line is not None:
            line.close()
        with _cond:
            if _monitor is threading.current_thread():
                _monitor = None


def watch(flow_run_id: Any, parent_id: Any, name: str, engine: _Engine) -> Callable[[], None] | None:
    """Counts a flow run's task runs for a progress line: a root flow run gets a `Watch`
    (when `FERROFLOW_PROGRESS` and the terminal say so), a subflow counts in the watch of
    the flow run it runs under. Returns what to call when the flow run ends (after its
    runs have ended), or None when nothing watches it."""
    if parent_id is not None:
        with _cond:
            root = _watches.get(parent_id)
            if root is None:
                return None
            _watches[flow_run_id] = root
        root.add(engine)

        def subflow_ended() -> None:
            root.retire(engine)
            with _cond:
                _watches.pop(flow_run_id, None)

        return subflow_ended

    chosen = mode()
    if chosen == "off" or (chosen == "auto" and not _isatty(sys.stderr)):
        return None
    started = Watch(name, engine, force_terminal=chosen == "on")
    with _cond:
        _watches[flow_run_id] = started
    started.begin()

    def ended() -> None:
        with _cond:
            _watches.pop(flow_run_id, None)
        started.end()

    return ended


def _end_all() -> None:
    """At exit: erase any line still shown (a flow run in a daemon thread)."""
    with _cond:
        live = set(_watches.values())
        _watches.clear()
    for each in live:
        each.end()


def _forget_after_fork() -> None:
    """In a forked child, the monitor does not exist, nor the flow runs it watched."""
    global _cond, _monitor
    _cond = threading.Condition()
    _monitor = None
    _roots.clear()
    _watches.clear()


atexit.register(_end_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
