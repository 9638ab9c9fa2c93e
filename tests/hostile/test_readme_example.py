"""The README's HostileServer example runs as it is written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

README = Path(__file__).parents[2] / "README.md"


async def test_the_readme_example_passes() -> None:
    section = README.read_text(encoding="utf-8").split("### Scripting a misbehaving server")[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    namespace: dict[str, Any] = {}
    exec(compile(code.group(1), str(README), "exec"), namespace)
    await namespace["test_my_bot_survives_a_lost_ack_and_a_garbage_frame"]()
