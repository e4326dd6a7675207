"""Write what ``airflow_capillary/settings.py`` and ``__version__`` decide into the files that show it.

* ``airflow_capillary/get_provider_info.py``: ``versions`` and the ``conn-fields`` of the
  ``capillary`` connection type. That module stays a literal dict with no imports (Airflow
  calls it for every command and DAG parse), so the values are written into it, between its
  ``[START conn-fields]`` / ``[END conn-fields]`` comments, then formatted with ruff.
* ``README.md``: the table of the connection's fields and the table of the task settings,
  between ``<!-- [START name] ... -->`` / ``<!-- [END name] -->`` comments.

Usage::

    python scripts/gen_provider_info.py          # rewrite the files
    python scripts/gen_provider_info.py --check  # exit 1 and name the stale files; write nothing
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from airflow_capillary import __version__, settings  # noqa: E402

PROVIDER_INFO = ROOT / "airflow_capillary" / "get_provider_info.py"
README = ROOT / "README.md"

_CONN_FIELDS_RE = re.compile(
    r"(?P<start>^(?P<indent>[ ]*)# \[START conn-fields\][^\n]*\n).*?(?P<end>^[ ]*# \[END conn-fields\])",
    re.M | re.S,
)
_VERSIONS_RE = re.compile(r'^(?P<indent>[ ]*)"versions": \[[^\]]*\],$', re.M)

#: The standard connection fields, as the README's table shows them.
STANDARD_FIELDS: tuple[tuple[str, str], ...] = (
    (
        "host",
        "the cluster URL, e.g. `https://eucrm.cc.capillarytech.com` (https when no scheme is given; "
        "`http://` for the emulator)",
    ),
    (
        "login / password",
        "basic: till username / plain password (the hook sends its MD5); oauth: client key / client secret",
    ),
)

_JSON_TYPES: dict[str, str] = {
    "choice": "string",
    "boolean": "boolean",
    "integer": "integer",
    "number": "number",
    "timeout": "number",
    "verify": "string",
    "object": "object",
    "hosts": "array",
}


def _form_default(setting: settings.Setting) -> Any:
    if setting.kind == "verify":
        return "true" if setting.default is True else "false" if setting.default is False else setting.default
    if isinstance(setting.default, float) and setting.default.is_integer():
        return int(setting.default)
    return setting.default


def conn_fields() -> dict[str, Any]:
    """Return the ``conn-fields`` entry of the provider info, one field per connection setting.

    :return: extra name -> ``{"label", "description", "schema"}`` (Airflow's provider.yaml schema).
    """
    fields: dict[str, Any] = {}
    for s in settings.CONNECTION_SETTINGS:
        json_type = _JSON_TYPES.get(s.kind, "string")
        schema: dict[str, Any] = {"type": [json_type, "null"]}
        if json_type == "array":
            schema["items"] = {"type": "string"}
        if s.choices:
            schema["enum"] = list(s.choices)
        if s.form_format:
            schema["format"] = s.form_format
        default = _form_default(s)
        if default is not None and default != {} and default != ():
            schema["default"] = default
        if s.minimum is not None:
            schema["minimum"] = int(s.minimum) if float(s.minimum).is_integer() else s.minimum
        fields[s.extra_name] = {"label": s.label, "description": s.help, "schema": schema}
    return fields


def _readme_default(setting: settings.Setting) -> str:
    value = setting.default
    if value is None or value == {} or value == ():
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def readme_connection_table() -> str:
    """Return the README's table of the connection's fields (standard fields, then extras).

    :return: a Markdown table, ending with a newline.
    """
    rows = ["| field | meaning | default |", "|---|---|---|"]
    rows += [f"| {field} | {meaning} | |" for field, meaning in STANDARD_FIELDS]
    for s in settings.CONNECTION_SETTINGS:
        where = " A task may override it." if s.scope == "both" else ""
        rows.append(f"| extra `{s.extra_name}` | {_cell(s.help)}{where} | {_readme_default(s)} |")
    return "\n".join(rows) + "\n"


def readme_task_table() -> str:
    """Return the README's table of the task settings (hook and operator arguments).

    :return: a Markdown table, ending with a newline.
    """
    rows = ["| argument | meaning | default |", "|---|---|---|"]
    for s in settings.TABLE:
        if s.scope != "connection":
            rows.append(f"| `{s.name}` | {_cell(s.help)} | {_readme_default(s)} |")
    return "\n".join(rows) + "\n"


#: README region name -> the function that renders it.
README_REGIONS: dict[str, Callable[[], str]] = {
    "connection-table": readme_connection_table,
    "task-table": readme_task_table,
}


def _replace_once(
    pattern: re.Pattern[str], repl: Callable[[re.Match[str]], str], text: str, what: str
) -> str:
    new, count = pattern.subn(repl, text)
    if count != 1:
        raise SystemExit(f"{what}: expected exactly one match of {pattern.pattern!r}, found {count}")
    return new


def _ruff_format(source: str, path: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--stdin-filename", str(path), "-"],
        input=source,
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    if result.returncode != 0:
        raise SystemExit(f"ruff format failed on the generated {path.name}: {result.stderr}")
    return result.stdout


def render_provider_info(text: str) -> str:
    """Return ``get_provider_info.py``'s text with ``versions`` and ``conn-fields`` from the table.

    :param text: the module's current text.
    :return: the text to write (formatted with ruff).
    """
    text = _replace_once(
        _CONN_FIELDS_RE,
        lambda m: f'{m["start"]}{m["indent"]}"conn-fields": {conn_fields()!r},\n{m["end"]}',
        text,
        PROVIDER_INFO.name,
    )
    text = _replace_once(
        _VERSIONS_RE, lambda m: f'{m["indent"]}"versions": [{__version__!r}],', text, PROVIDER_INFO.name
    )
    return _ruff_format(text, PROVIDER_INFO)


def render_readme(text: str) -> str:
    """Return README.md's text with every generated region rewritten from the table.

    :param text: the README's current text.
    :return: the text to write.
    """
    for name, render in README_REGIONS.items():
        pattern = re.compile(
            rf"(?P<start>^<!-- \[START {name}\][^\n]*-->\n).*?(?P<end>^<!-- \[END {name}\] -->$)", re.M | re.S
        )
        body = render()

        def fill(m: re.Match[str], body: str = body) -> str:
            return f"{m['start']}{body}{m['end']}"

        text = _replace_once(pattern, fill, text, README.name)
    return text


def main(argv: list[str] | None = None) -> int:
    """Rewrite (or, with ``--check``, compare) the generated parts.

    :param argv: command-line arguments (default ``sys.argv[1:]``).
    :return: 0, or 1 when ``--check`` finds a stale file.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 if a file is stale")
    args = parser.parse_args(argv)
    stale = []
    for path, render in ((PROVIDER_INFO, render_provider_info), (README, render_readme)):
        current = path.read_text(encoding="utf-8")
        wanted = render(current)
        if wanted == current:
            continue
        stale.append(path.relative_to(ROOT))
        if not args.check:
            path.write_text(wanted, encoding="utf-8")
    if args.check and stale:
        print(f"stale: {', '.join(map(str, stale))} (run python scripts/gen_provider_info.py)")
        return 1
    for path in stale:
        print(f"rewrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
