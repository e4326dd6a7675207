"""The release artifacts: what ``make dist`` builds, what each file holds, and that the wheels work.

``scripts/dist.py`` (``make dist``) builds the wheel and sdist of the provider and of the emulator
into a temporary folder and ``twine check``s them. The tests then read the archives (the provider
wheel holds the provider only: no tests, no emulator, no benchmarks) and install both wheels, not
the editable tree, into a fresh venv: ``uv pip install --offline`` with the lock as constraints,
from uv's cache, so that only what the wheels declare gets installed. From that venv, with the
repository off ``sys.path``, Airflow's providers manager finds the provider through its entry point,
the emulator runs as ``python -m capillary_emulator``, and ``airflow dags test`` runs the
catalogue refresh against it. A missing ``py.typed``, package file, entry point or dependency
fails here.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

import capillary_emulator
import pytest
from capillary_emulator import DEFAULT_PASSWORD, DEFAULT_USER, EmulatorProcess, connection_uri

import airflow_capillary
from tests.e2e.test_example_dags import EXPECTED_SAMPLES, SAMPLES

pytestmark = [pytest.mark.e2e, pytest.mark.release]

REPO_ROOT = Path(__file__).resolve().parents[2]
UV = REPO_ROOT / ".tools" / "bin" / "uv"
LOCK = REPO_ROOT / "requirements" / "lock-airflow-3.3.txt"
PROVIDER_VERSION = airflow_capillary.__version__
EMULATOR_VERSION = capillary_emulator.__version__
DAG_ID = "capillary_reward_catalogue_refresh"
#: What every installed process runs with: nothing of the repository or of this test process.
_DROPPED_PREFIXES = ("AIRFLOW", "CAPILLARY", "VIRTUAL_ENV", "PYTHONPATH", "UV_")


@dataclass(frozen=True)
class Artifacts:
    """The four files of one ``scripts/dist.py`` run."""

    folder: Path
    provider_wheel: Path
    provider_sdist: Path
    emulator_wheel: Path
    emulator_sdist: Path


def package_files(package: Path) -> set[str]:
    """Return the files a distribution of ``package`` must ship: its modules and ``py.typed``.

    :param package: the package folder in the repository.
    :return: paths relative to the package's parent, POSIX style.
    """
    return {
        path.relative_to(package.parent).as_posix()
        for path in package.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def wheel_names(wheel: Path) -> set[str]:
    """Return the file names inside a wheel.

    :param wheel: the wheel.
    :return: its members.
    """
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def wheel_text(wheel: Path, member: str) -> str:
    """Return one member of a wheel as text.

    :param wheel: the wheel.
    :param member: the member's name.
    :return: its text.
    """
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(member).decode()


def sdist_names(sdist: Path) -> set[str]:
    """Return the regular files inside an sdist, without its top folder.

    :param sdist: the ``.tar.gz``.
    :return: member paths below ``{name}-{version}/``.
    """
    with tarfile.open(sdist) as archive:
        return {member.name.split("/", 1)[1] for member in archive.getmembers() if member.isfile()}


def metadata(wheel: Path, dist_info: str) -> Message:
    """Parse a wheel's METADATA.

    :param wheel: the wheel.
    :param dist_info: its ``.dist-info`` folder name.
    :return: the headers.
    """
    return HeaderParser().parsestr(wheel_text(wheel, f"{dist_info}/METADATA"))


def entry_points(wheel: Path, dist_info: str) -> dict[str, dict[str, str]]:
    """Parse a wheel's ``entry_points.txt``.

    :param wheel: the wheel.
    :param dist_info: its ``.dist-info`` folder name.
    :return: group -> name -> object reference.
    """
    parser = configparser.ConfigParser()
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(wheel_text(wheel, f"{dist_info}/entry_points.txt"))
    return {group: dict(parser[group]) for group in parser.sections()}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    """Run ``scripts/dist.py`` (what ``make dist`` runs) into a temporary folder.

    :param tmp_path_factory: pytest's temporary folders.
    :return: the artifacts.
    """
    folder = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "dist.py"), "--outdir", str(folder)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    built = sorted(path.name for path in folder.iterdir())
    assert built == [
        f"airflow_provider_capillary-{PROVIDER_VERSION}-py3-none-any.whl",
        f"airflow_provider_capillary-{PROVIDER_VERSION}.tar.gz",
        f"capillary_emulator-{EMULATOR_VERSION}-py3-none-any.whl",
        f"capillary_emulator-{EMULATOR_VERSION}.tar.gz",
    ]
    assert result.stdout.count("twine check: PASSED") == 4, result.stdout
    return Artifacts(folder, *(folder / name for name in built))


PROVIDER_DIST_INFO = f"airflow_provider_capillary-{PROVIDER_VERSION}.dist-info"
EMULATOR_DIST_INFO = f"capillary_emulator-{EMULATOR_VERSION}.dist-info"
DIST_INFO_FILES = ("METADATA", "WHEEL", "RECORD", "entry_points.txt", "top_level.txt", "licenses/LICENSE")
EGG_INFO_FILES = (
    "PKG-INFO",
    "SOURCES.txt",
    "dependency_links.txt",
    "entry_points.txt",
    "requires.txt",
    "top_level.txt",
)


def test_provider_wheel_holds_the_provider_package_and_nothing_else(artifacts: Artifacts) -> None:
    names = wheel_names(artifacts.provider_wheel)

    assert names == package_files(REPO_ROOT / "airflow_capillary") | {
        f"{PROVIDER_DIST_INFO}/{name}" for name in DIST_INFO_FILES
    }
    assert "airflow_capillary/py.typed" in names
    top_level = {name.split("/", 1)[0] for name in names}
    assert top_level == {"airflow_capillary", PROVIDER_DIST_INFO}  # no tests, emulator, benchmarks
    assert not [name for name in names if "emulator" in name or "benchmark" in name]


def test_provider_wheel_declares_its_entry_point_metadata_and_version(artifacts: Artifacts) -> None:
    wheel = artifacts.provider_wheel
    meta = metadata(wheel, PROVIDER_DIST_INFO)

    assert entry_points(wheel, PROVIDER_DIST_INFO) == {
        "apache_airflow_provider": {"provider_info": "airflow_capillary.get_provider_info:get_provider_info"}
    }
    assert (meta["Name"], meta["Version"]) == ("airflow-provider-capillary", PROVIDER_VERSION)
    assert (meta["License-Expression"], meta["License-File"]) == ("Apache-2.0", "LICENSE")
    assert meta["Requires-Python"] == ">=3.10"
    assert "Framework :: Apache Airflow :: Provider" in meta.get_all("Classifier", [])
    urls = meta.get_all("Project-URL", [])
    assert urls, "no Project-URL"
    assert all(url.split(", ", 1)[1].startswith("https://") for url in urls), urls
    assert meta["Description-Content-Type"] == "text/markdown"
    requires = meta.get_all("Requires-Dist", [])
    assert 'capillary-emulator; extra == "emulator"' in requires
    assert 'apache-airflow-providers-openlineage>=2.20; extra == "openlineage"' in requires
    assert {"emulator", "openlineage"} <= set(meta.get_all("Provides-Extra", []))
    assert "License ::" not in " ".join(meta.get_all("Classifier", []))  # PEP 639: the expression only


def test_emulator_wheel_holds_only_capillary_emulator(artifacts: Artifacts) -> None:
    wheel = artifacts.emulator_wheel
    meta = metadata(wheel, EMULATOR_DIST_INFO)

    assert wheel_names(wheel) == package_files(REPO_ROOT / "emulator" / "capillary_emulator") | {
        f"{EMULATOR_DIST_INFO}/{name}" for name in DIST_INFO_FILES
    }
    assert entry_points(wheel, EMULATOR_DIST_INFO) == {
        "console_scripts": {"capillary-emulator": "capillary_emulator.__main__:main"},
        "pytest11": {"capillary_emulator": "capillary_emulator.pytest_plugin"},
    }
    assert (meta["Name"], meta["Version"]) == ("capillary-emulator", EMULATOR_VERSION)
    assert (meta["License-Expression"], meta["Requires-Python"]) == ("Apache-2.0", ">=3.10")
    assert meta.get_all("Project-URL", [])


def test_sdists_hold_the_sources_and_the_release_files_without_tests(artifacts: Artifacts) -> None:
    provider_egg = "airflow_provider_capillary.egg-info"
    emulator_egg = "capillary_emulator.egg-info"

    assert sdist_names(artifacts.provider_sdist) == package_files(REPO_ROOT / "airflow_capillary") | {
        "PKG-INFO",
        "README.md",
        "LICENSE",
        "CHANGELOG.md",
        "MANIFEST.in",
        "setup.cfg",
        "pyproject.toml",
        *(f"{provider_egg}/{name}" for name in EGG_INFO_FILES),
    }
    assert sdist_names(artifacts.emulator_sdist) == package_files(
        REPO_ROOT / "emulator" / "capillary_emulator"
    ) | {
        "PKG-INFO",
        "README.md",
        "LICENSE",
        "setup.cfg",
        "pyproject.toml",
        *(f"{emulator_egg}/{name}" for name in EGG_INFO_FILES),
    }


# -- the wheels, installed --------------------------------------------------------------------------

#: Run in the fresh venv: where everything was imported from, and what Airflow discovered.
PROBE = """
import importlib.metadata as md, json, pathlib, warnings
import airflow_capillary, capillary_emulator
from airflow.providers_manager import ProvidersManager
warnings.simplefilter("ignore")
manager = ProvidersManager()
hook = manager.hooks.get("capillary")
dist = md.distribution("airflow-provider-capillary")
print(json.dumps({
    "provider_file": airflow_capillary.__file__,
    "emulator_file": capillary_emulator.__file__,
    "py_typed": [(pathlib.Path(m.__file__).parent / "py.typed").is_file()
                 for m in (airflow_capillary, capillary_emulator)],
    "direct_urls": [json.loads(md.distribution(name).read_text("direct_url.json"))["url"]
                    for name in ("airflow-provider-capillary", "capillary-emulator")],
    "versions": [dist.version, airflow_capillary.__version__,
                 manager.providers["airflow-provider-capillary"].version,
                 manager.providers["airflow-provider-capillary"].data["versions"]],
    "hook": hook.hook_class_name if hook else None,
    "extra_links": sorted(n for n in manager.extra_links_class_names if "capillary" in n),
    "pytest11": sorted(e.value for e in md.entry_points(group="pytest11") if e.name == "capillary_emulator"),
    "distributions": sorted(d.metadata["Name"].lower().replace("_", "-") for d in md.distributions()),
}))
"""


@dataclass(frozen=True)
class FreshVenv:
    """A venv with the built wheels installed, and the environment its processes run with."""

    path: Path
    env: dict[str, str]
    work: Path

    @property
    def python(self) -> Path:
        """The venv's interpreter."""
        return self.path / "bin" / "python"

    def run(self, *argv: str, timeout: float = 240) -> str:
        """Run a command of the venv's ``bin/`` in the work folder; fail the test if it fails.

        :param argv: the program (``"airflow"``, ``"python"``) and its arguments.
        :param timeout: seconds before it is killed.
        :return: stdout and stderr together.
        """
        result = subprocess.run(
            [str(self.path / "bin" / argv[0]), *argv[1:]],
            env=self.env,
            cwd=self.work,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"{' '.join(argv)} exited {result.returncode}:\n{output[-5000:]}"
        return output


def _lock_names() -> set[str]:
    return {
        line.split("==", 1)[0].lower().replace("_", "-")
        for line in LOCK.read_text().splitlines()
        if "==" in line and not line.startswith((" ", "#"))
    }


@pytest.fixture(scope="module")
def fresh_venv(artifacts: Artifacts, tmp_path_factory: pytest.TempPathFactory) -> FreshVenv:
    """Install the two built wheels, with only the dependencies they declare, into a new venv.

    :param artifacts: the built files.
    :param tmp_path_factory: pytest's temporary folders.
    :return: the venv.
    """
    if not UV.is_file():
        pytest.fail(f"{UV} is missing: `make venv` installs it")
    root = tmp_path_factory.mktemp("fresh-venv")
    venv = root / "venv"
    base = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED_PREFIXES)}
    uv_env = {**base, "UV_COMPILE_BYTECODE": "1", "VIRTUAL_ENV": str(venv)}
    if "UV_CACHE_DIR" in os.environ:
        uv_env["UV_CACHE_DIR"] = os.environ["UV_CACHE_DIR"]
    for argv in (
        [str(UV), "venv", "--quiet", "--python", sys.executable, str(venv)],
        [
            str(UV),
            "pip",
            "install",
            "--quiet",
            "--offline",  # from uv's cache, filled by `make venv` from the same lock: no network
            "--constraint",
            str(LOCK),
            str(artifacts.provider_wheel),
            str(artifacts.emulator_wheel),
        ],
    ):
        result = subprocess.run(argv, env=uv_env, capture_output=True, text=True, timeout=240, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
    work = root / "work"
    shutil.copytree(REPO_ROOT / "dags_examples", work / "dags", ignore=shutil.ignore_patterns("__pycache__"))
    env = {
        **base,
        "PYTHONSAFEPATH": "1",  # the working folder never lands on sys.path
        "AIRFLOW_HOME": str(work / "airflow-home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(work / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "CAPILLARY_PAYLOAD_DIR": str(work / "payloads"),
    }
    return FreshVenv(venv, env, work)


def test_airflow_finds_the_installed_wheels_not_the_repository(
    artifacts: Artifacts, fresh_venv: FreshVenv
) -> None:
    probe: dict[str, Any] = json.loads(fresh_venv.run("python", "-c", PROBE).splitlines()[-1])
    site_packages = fresh_venv.path / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    site_packages /= "site-packages"

    assert probe["provider_file"] == str(site_packages / "airflow_capillary" / "__init__.py")
    assert probe["emulator_file"] == str(site_packages / "capillary_emulator" / "__init__.py")
    assert probe["direct_urls"] == [artifacts.provider_wheel.as_uri(), artifacts.emulator_wheel.as_uri()]
    assert probe["py_typed"] == [True, True]
    assert probe["versions"] == [PROVIDER_VERSION, PROVIDER_VERSION, PROVIDER_VERSION, [PROVIDER_VERSION]]
    assert probe["hook"] == "airflow_capillary.hooks.file_service.CapillaryFileHook"
    assert probe["extra_links"] == ["airflow_capillary.links.CapillaryImageLink"]
    assert probe["pytest11"] == ["capillary_emulator.pytest_plugin"]
    # Only what the wheels declare came in, each pinned by the lock: nothing of the dev tools.
    installed = set(probe["distributions"])
    assert {"airflow-provider-capillary", "capillary-emulator", "apache-airflow"} <= installed
    assert installed - {"airflow-provider-capillary", "capillary-emulator"} <= _lock_names()
    assert not installed & {"pytest", "mypy", "ruff", "playwright", "mutmut", "moto"}
    assert "apache-airflow-providers-openlineage" not in installed  # an extra, not a dependency


#: Run in the fresh venv, which has no OpenLineage provider: the lineage module still loads and
#: reports hook lineage; only the operator's OpenLineage lineage needs the provider.
WITHOUT_OPENLINEAGE = """
import importlib.util, sys, types
from airflow_capillary import lineage
from airflow_capillary.hooks.file_service import PreparedUpload
result = types.SimpleNamespace(namespace="rewards", name="a.png", file_handle="h-1", version=1)
prepared = PreparedUpload("a.png", "rewards", "image/png", 1, "/data/a.png", "https://eu.example.com/x")
lineage.report_upload(None, prepared, result, base_url="https://eu.example.com")
print(importlib.util.find_spec("airflow.providers.openlineage"), importlib.util.find_spec("openlineage"))
print(lineage.create_asset(base_url="https://eu.example.com", namespace="rewards", name="a.png").uri)
try:
    lineage.operator_lineage([], base_url="https://eu.example.com")
except ImportError as exc:
    print(type(exc).__name__, exc)
"""


def test_the_provider_works_without_the_openlineage_provider(fresh_venv: FreshVenv) -> None:
    output = fresh_venv.run("python", "-c", WITHOUT_OPENLINEAGE).splitlines()

    assert output[-3:] == [
        "None None",
        "capillary://eu.example.com/rewards/a.png",
        "ModuleNotFoundError No module named 'airflow.providers.openlineage'",
    ]


def test_installed_wheels_run_the_catalogue_refresh_with_airflow_dags_test(fresh_venv: FreshVenv) -> None:
    fresh_venv.run("airflow", "db", "migrate")
    with EmulatorProcess(fresh_venv.work / "emulator", python=fresh_venv.python, env=fresh_venv.env) as emu:
        env = {
            **fresh_venv.env,
            "AIRFLOW_CONN_CAPILLARY_DEFAULT": connection_uri(emu.base_url, DEFAULT_USER, DEFAULT_PASSWORD),
        }
        output = FreshVenv(fresh_venv.path, env, fresh_venv.work).run("airflow", "dags", "test", DAG_ID)
        stored = sorted(
            (f["namespace"], f["name"], f["version"], f["size"], f["sha256"], f["placeholder"])
            for f in emu.stored_files()
        )

    (finished,) = [line for line in output.splitlines() if f"DagRun Finished: dag_id={DAG_ID}," in line]
    assert "state=success" in finished, output[-4000:]
    assert stored == EXPECTED_SAMPLES
    (payload,) = (fresh_venv.work / "payloads").glob("reward-catalogue-*.json")
    assert [r["name"] for r in json.loads(payload.read_text())["rewards"]] == SAMPLES
