"""``rtclient chat``: an interactive chat on prompt_toolkit, or JSON lines when piped.

In a terminal, incoming messages print above the input line and a bottom toolbar shows
the connection (``reconnecting in 2.1 s``), RTT, quality, the queue and the room. When
stdin or stdout is not a terminal, :mod:`.pipe` takes over.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from prompt_toolkit import PromptSession
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.input import Input, create_input
from prompt_toolkit.output import Output
from prompt_toolkit.patch_stdout import patch_stdout

from ..backoff import Backoff
from ..client import Client
from ..errors import RtClientError
from .auth import (
    UsageError,
    add_connection_arguments,
    check_credentials,
    make_client,
    urls_of,
)
from .auth import token_provider as token_source
from .controller import ChatController
from .keys import CoalescingInput, size_limit_bindings, trim_to_limit
from .lines import MAX_TEXT_CHARS, too_long_text
from .render import describe_error

__all__ = ["add_arguments", "exit_status", "interactive", "run", "shown_url"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``chat`` subcommand's arguments."""
    add_connection_arguments(parser)
    parser.add_argument(
        "--room", action="append", required=True, help="room to join (repeat for more)"
    )
    parser.add_argument(
        "--ping-interval", type=float, default=2.0, help="seconds between heartbeats (RTT)"
    )
    parser.add_argument(
        "--give-up", type=float, metavar="S", help="stop reconnecting after S seconds of failure"
    )
    parser.add_argument(
        "--history",
        type=int,
        default=10,
        metavar="N",
        help="show a room's last N messages on join (default 10; 0: none)",
    )
    parser.add_argument(
        "--flush-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="at the end, wait up to S seconds for unacknowledged messages (default 10)",
    )


def shown_url(url: str) -> str:
    """``url`` without its query string (a ``?token=`` must not reach the screen)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def run(args: argparse.Namespace) -> int:
    """Run ``rtclient chat``; returns the exit status."""
    from .pipe import run_pipe

    # sys.stdin (or stdout) is None when its descriptor was closed (`<&-`): no input.
    if sys.stdin and sys.stdin.isatty() and sys.stdout and sys.stdout.isatty():
        return asyncio.run(_interactive_main(args))
    return asyncio.run(run_pipe(args))


def build_client(args: argparse.Namespace) -> tuple[Client, object]:
    """The Client the arguments describe, and its token source (to check first)."""
    source = token_source(args, urls_of(args))
    options: dict[str, Any] = {"ping_interval": args.ping_interval}
    backoff = None
    if args.give_up is not None:
        backoff = Backoff(max_elapsed=args.give_up)
        # One attempt must not outlast the budget (the default allows 10 s).
        options["connect_timeout"] = max(0.5, min(10.0, args.give_up))
    client = make_client(args, source, backoff=backoff, **options)
    return client, source


async def open_client(args: argparse.Namespace) -> Client | int:
    """The client for ``args`` with its credentials checked, or an exit status (2: usage,
    1: the credentials failed), the reason already on stderr."""
    try:
        client, source = build_client(args)
        await check_credentials(source)
    except UsageError as exc:
        print(f"rtclient chat: error: {exc}", file=sys.stderr)
        return 2
    except RtClientError as exc:
        print(f"rtclient chat: {describe_error(exc)}", file=sys.stderr)
        return 1
    return client


async def _interactive_main(args: argparse.Namespace) -> int:
    client = await open_client(args)
    if isinstance(client, int):
        return client
    print(
        f"rtclient chat · {', '.join(shown_url(u) for u in urls_of(args))}"
        f" · rooms: {', '.join(args.room)}"
        " · /help for commands, Ctrl-D to quit"
    )
    colour = not os.environ.get("NO_COLOR") and os.environ.get("TERM", "dumb") != "dumb"
    with patch_stdout(raw=True):
        controller = await interactive(client, args.room, history=args.history, colour=colour)
    return exit_status(controller)


def exit_status(controller: ChatController) -> int:
    """1 after a fatal error (said on stderr) or when a message was not delivered, else 0."""
    if controller.fatal is not None:
        print(f"rtclient chat: {describe_error(controller.fatal)}", file=sys.stderr)
        return 1
    return 1 if controller.failed else 0


async def interactive(
    client: Client,
    rooms: list[str],
    *,
    input: Input | None = None,
    output: Output | None = None,
    out: Callable[[str], None] | None = None,
    refresh_interval: float = 0.25,
    max_chars: int = MAX_TEXT_CHARS,
    history: int = 10,
    colour: bool = False,
    on_ready: Callable[[ChatController, PromptSession[str]], None] | None = None,
) -> ChatController:
    """Run the chat until /quit, Ctrl-D, Ctrl-C or a fatal error; the client is closed after.

    ``input`` / ``output`` default to the terminal (tests pass a pipe input and a
    DummyOutput); ``out`` writes a line above the prompt (default: ``print``, which
    goes above the input line under ``patch_stdout``). ``on_ready`` is called with the
    controller and the prompt session once both exist. The input line holds at most
    ``max_chars`` characters: a paste past that is refused, with a line saying so.
    On join the room's last ``history`` messages are shown, marked ``(history)``;
    with ``colour`` each user's name has a colour of its own.
    """
    write = out or (lambda line: print(line, flush=True))
    controller: ChatController
    last_refusal = -math.inf

    def refused(chars: int) -> None:
        nonlocal last_refusal
        now = time.monotonic()
        if now - last_refusal >= 2.0:  # once per burst, not for every piece of it
            controller.say(f"· not inserted: {too_long_text(chars, max_chars)}")
        last_refusal = now

    def paste_refused(chars: int) -> None:  # once per paste (keys.PasteGuard)
        nonlocal last_refusal
        last_refusal = time.monotonic()
        controller.say(f"· not inserted: {too_long_text(chars, max_chars)}")

    session: PromptSession[str] = PromptSession(
        message=lambda: f"{controller.current or '-'}> ",
        bottom_toolbar=lambda: controller.toolbar(),
        refresh_interval=refresh_interval,
        input=CoalescingInput(input or create_input()),
        output=output,
        key_bindings=size_limit_bindings(paste_refused, max_chars),
    )
    controller = ChatController(
        client,
        rooms,
        out=write,
        invalidate=session.app.invalidate,
        history=history,
        colour=colour,
    )

    def typed(buffer: Buffer) -> None:
        nonlocal last_refusal
        if not buffer.text:
            last_refusal = -math.inf  # a new line: a refusal is news again
        trim_to_limit(buffer, refused, max_chars)
        controller.user_typed(buffer.text)

    session.default_buffer.on_text_changed += typed
    if on_ready is not None:
        on_ready(controller, session)
    await controller.start()
    try:
        while not controller.done.is_set():
            line = await _prompt(session, controller.done)
            if line is None:
                break
            controller.handle_line(line)
    finally:
        await controller.stop()
    if controller.failed:
        write(f"· {controller.failed} message(s) not delivered")
    return controller


async def _prompt(session: PromptSession[str], done: asyncio.Event) -> str | None:
    """The next line; None on Ctrl-D, Ctrl-C, or when ``done`` is set meanwhile.

    The prompt runs in this task, not a task of its own: prompt_toolkit raises
    KeyboardInterrupt for Ctrl-C, which must not escape a task (it would stop the loop).
    ``done`` ends the prompt with prompt_toolkit's documented race-free recipe: a
    ``pre_run`` hook for an event set before the prompt runs, ``app.exit`` after.
    """
    app = session.app
    running = False

    def end() -> None:
        if app.future is not None and not app.future.done():
            app.exit(exception=EOFError())

    def pre_run() -> None:
        nonlocal running
        running = True
        if done.is_set():
            end()

    async def watch() -> None:
        await done.wait()
        if running:
            end()

    watcher = asyncio.create_task(watch())
    try:
        return await session.prompt_async(pre_run=pre_run)
    except (EOFError, KeyboardInterrupt):
        return None
    finally:
        watcher.cancel()
        await asyncio.wait([watcher])
