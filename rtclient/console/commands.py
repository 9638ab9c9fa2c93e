"""Reading an input line of ``rtclient chat``: a message, or a ``/command``."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["COMMANDS", "HELP", "Command", "Message", "parse_line"]

COMMANDS: dict[str, tuple[str, str]] = {
    "join": ("ROOM", "join ROOM and talk there"),
    "leave": ("[ROOM]", "leave ROOM (default: the current room)"),
    "room": ("ROOM", "talk in ROOM (already joined)"),
    "rooms": ("", "list the joined rooms"),
    "who": ("[ROOM]", "who is in ROOM (default: the current room)"),
    "dm": ("USER TEXT", "send TEXT to USER alone (a direct message)"),
    "quit": ("", "close the connection (queued messages are flushed) and exit"),
    "help": ("", "this help"),
}
_NEEDS_ARG = frozenset({"join", "room", "dm"})
_ALIASES = {
    "exit": "quit",
    "q": "quit",
    "part": "leave",
    "members": "who",
    "?": "help",
    "msg": "dm",
}

HELP = "\n".join(
    [f"  /{name} {arg}".ljust(20) + text for name, (arg, text) in COMMANDS.items()]
    + ["  //text".ljust(20) + "send a message starting with /"]
)


@dataclass(frozen=True, slots=True)
class Message:
    """Text to send to the current room."""

    text: str


@dataclass(frozen=True, slots=True)
class Command:
    """A ``/command``; ``error`` is set when it cannot be run as typed."""

    name: str
    arg: str | None = None
    error: str | None = None
    text: str | None = None
    """The message of ``/dm USER TEXT`` (``arg`` is the user)."""


def parse_line(line: str) -> Message | Command | None:
    """Parse a line the user entered; None for a blank line."""
    text = line.strip()
    if not text:
        return None
    if text.startswith("//"):
        return Message(text[1:])
    if not text.startswith("/"):
        return Message(text)
    word, _, rest = text[1:].partition(" ")
    name = _ALIASES.get(word.lower(), word.lower())
    arg = rest.strip() or None
    if name not in COMMANDS:
        return Command(name, arg, error=f"unknown command /{word}; /help lists them")
    if name in _NEEDS_ARG and arg is None:
        return Command(name, None, error=f"usage: /{name} {COMMANDS[name][0]}")
    if name == "dm":
        assert arg is not None
        user, _, text = arg.partition(" ")
        if not text.strip():
            return Command(name, arg, error=f"usage: /dm {COMMANDS[name][0]}")
        return Command(name, user, text=text.strip())
    if arg is not None and " " in arg:
        return Command(name, arg, error=f"/{name} takes one room name")
    return Command(name, arg)
