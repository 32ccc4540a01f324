"""Config: defaults, interpolation, errors that name the field path, `callgate check`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from proxy.cli import main
from proxy.config import Config, load_config, parse_config
from proxy.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_example_config_is_valid_and_equals_the_defaults() -> None:
    env = {"UPSTREAM_BASE_URL": "http://llm.local/v1"}
    cfg = load_config(ROOT / "config.example.yaml", env=env)
    assert cfg.upstream.base_url == "http://llm.local/v1"
    defaults = Config()
    defaults.upstream.base_url = "http://llm.local/v1"
    assert cfg == defaults


def test_example_config_documents_every_key() -> None:
    data = yaml.safe_load((ROOT / "config.example.yaml").read_text())

    def keys(model: type, prefix: str = "") -> set[str]:
        out = set()
        for name, field in model.model_fields.items():
            out.add(prefix + name)
            ann = field.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                out |= keys(ann, f"{prefix}{name}.")
        return out

    def present(d: dict, prefix: str = "") -> set[str]:
        out = set()
        for k, v in d.items():
            out.add(prefix + k)
            if isinstance(v, dict):
                out |= present(v, f"{prefix}{k}.")
        return out

    missing = keys(Config) - present(data)
    assert not missing


def test_interpolation() -> None:
    env = {"KEY": "sk-1"}
    cfg = parse_config(
        {"upstream": {"api_key": "${KEY}", "base_url": "${URL:-http://x/v1}"}}, env=env
    )
    assert cfg.upstream.api_key == "sk-1" and cfg.upstream.base_url == "http://x/v1"
    with pytest.raises(ConfigError, match=r"upstream\.api_key: environment variable NOPE is not set"):
        parse_config({"upstream": {"api_key": "${NOPE}"}}, env={})
    assert parse_config({"control": {"webhook": {"headers": {"X": "$${literal}"}}}}, env={}).control.webhook.headers == {"X": "${literal}"}


@pytest.mark.parametrize(
    "data, path",
    [
        ({"commands": {"output": "loud"}}, "commands.output"),
        ({"server": {"port": "eighty"}}, "server.port"),
        ({"commands": {"function_map": [{"Function": "dance", "MatchFunction": "x"}]}}, "commands.function_map[0].Function"),
        ({"end_function": {"steps": [{"name": "a", "kind": "webhook"}]}}, "end_function.steps[0].url"),
        ({"end_function": {"steps": [{"name": "a", "kind": "python", "function": "nocolon"}]}}, "end_function.steps[0].function"),
        ({"call_id": [{"header": "a", "body": "b"}]}, "call_id[0]"),
        ({"commands": {"speek_closing": True}}, "commands.speek_closing"),
    ],
)
def test_errors_name_the_path(data: dict, path: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(data, env={})
    assert f"\n  {path}: " in str(e.value)


def test_function_map_accepts_ims_and_snake_case() -> None:
    cfg = parse_config({"commands": {"function_map": [{"Function": "hangup", "MatchFunction": "end_call"}, {"function": "transfer", "match_function": "xfer"}]}})
    assert [(e.function, e.match_function) for e in cfg.commands.function_map] == [("hangup", "end_call"), ("transfer", "xfer")]


def test_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("commands: {output: text}\n")
    assert main(["check", "--config", str(good)]) == 0
    assert "output text" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("commands:\n  output: loud\nserver: {port: -1}\n")
    assert main(["check", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "commands.output:" in err and "server.port:" in err
    assert main(["check", "--config", str(tmp_path / "missing.yaml")]) == 2
    (tmp_path / "syntax.yaml").write_text("server: [unclosed\n")
    assert main(["check", "--config", str(tmp_path / "syntax.yaml")]) == 2
    assert "not valid YAML" in capsys.readouterr().err


@pytest.mark.parametrize(("flags", "field"), [
    (["--port", "70000"], "server.port: Input should be less than or equal to 65535"),
    (["--port", "0", "--workers", "0"], "argument --workers: '0': auto, or a number from 1 to 64"),
])
def test_a_bad_command_line_override_is_a_config_error(tmp_path: Path, flags: list[str], field: str) -> None:
    """``serve --port 70000`` was an OverflowError traceback: the overrides go through
    the same model as the file, one line naming the field, exit 2."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"storage:\n  path: {tmp_path / 'cg.db'}\n")
    out = subprocess.run([sys.executable, "-m", "proxy.cli", "serve", "--config", str(cfg), *flags],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and field in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) <= 3  # one line (argparse adds its usage)
    assert not (tmp_path / "cg.db").exists()


def test_demo_runs_and_exits_0() -> None:
    """`callgate demo`, as `make demo` runs it: self-contained, exit 0."""
    result = subprocess.run([sys.executable, "-m", "proxy.cli", "demo"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "caller hears: 好的，我这就帮您转接人工客服。正在为您转接，请稍候……" in out
    assert "caller hears: 不客气，祝您生活愉快！感谢您的来电，再见！" in out
    assert "imsagent" not in out.split("control events")[0]
    assert "3. call.ended" in out and "crm (webhook): done" in out
    sip = out.split("call 2: a speech-to-speech call over SIP")[1]  # the second call: hung up after its goodbye played
    assert sip.index("output_audio_buffer.stopped (r_bye)") < sip.index("callgate -> POST hangup")
    assert sip.count("POST hangup") == 1 and "2. call.ended source=openai_sip agent_hangup" in sip
    assert "summary (python): done" in sip and "cost:  0.017332 USD" in sip


def test_the_working_directory_guard_sees_a_write_to_a_file_that_was_already_there(tmp_path: Path) -> None:
    """The guard against tests writing ./callgate.db catches a write to an existing
    file and a new lock file (it passed whenever callgate.db existed before)."""
    import os

    from .conftest import database_writes, default_database_files

    (tmp_path / "callgate.db").write_bytes(b"old")
    before = default_database_files(tmp_path)
    assert database_writes(before, default_database_files(tmp_path)) == []
    (tmp_path / "callgate.db.lock").write_bytes(b"")
    db = tmp_path / "callgate.db"
    db.write_bytes(b"new!")
    os.utime(db, ns=(1, 1))
    assert database_writes(before, default_database_files(tmp_path)) == ["callgate.db", "callgate.db.lock"]


def test_the_pool_config_is_checked_naming_what_is_wrong() -> None:
    from proxy.config import parse_config

    entry = {"name": "a", "base_url": "http://127.0.0.1:1/v1"}
    with pytest.raises(ConfigError, match="not both"):
        parse_config({"upstream": {"base_url": "http://x/v1"}, "upstreams": [entry]})
    with pytest.raises(ConfigError, match="names must be unique"):
        parse_config({"upstreams": [entry, entry]})
    with pytest.raises(ConfigError, match=r"routing.order: \['b'\] not in upstreams"):
        parse_config({"upstreams": [entry], "routing": {"order": ["b"]}})
    with pytest.raises(ConfigError, match=r"profiles.vip.upstreams: \['z'\]"):
        parse_config({"upstreams": [entry], "profiles": {"vip": {"upstreams": ["z"]}}})
    with pytest.raises(ConfigError, match=r"upstreams\[0\].prices.m.input_per_mtok"):
        parse_config({"upstreams": [{**entry, "prices": {"m": {"input_per_mtok": -1, "output_per_mtok": 1}}}]})
    config = parse_config({"upstream": {"base_url": "http://y/v1", "timeout_s": 7}})
    assert [(u.name, u.base_url, u.timeout_s) for u in config.pool] == [("default", "http://y/v1", 7)]


def test_a_removed_key_is_refused_naming_what_replaced_it() -> None:
    # Both warned through 0.4.x; from 0.5.0 they are refused with the same message.
    with pytest.raises(ConfigError) as e:
        parse_config({"control": {"webhook": {"attempts": 5}}}, "f.yaml")
    assert str(e.value) == (
        "f.yaml: control.webhook.attempts was removed: replaced by control.webhook.max_age_s: a delivery is retried "
        "while the event is fresh (default 120 s)"
    )
    with pytest.raises(ConfigError) as e:
        parse_config({"end_function": {"record_ttl_s": 60}}, "f.yaml")
    assert str(e.value) == (
        "f.yaml: end_function.record_ttl_s was removed: no longer needed: an ended call leaves memory at once; "
        "storage.retention_days deletes old ones"
    )


def test_a_removed_key_still_accepted_warns(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    from proxy import config as config_module

    monkeypatch.setitem(config_module.REMOVED_KEYS, "end_function.record_ttl_s", ("no longer needed", False))
    config = parse_config({"end_function": {"record_ttl_s": 60}}, "f.yaml")
    assert config.end_function.after_hangup_s >= 0
    warned = [r.getMessage() for r in caplog.records if r.name == "callgate.config"]
    assert warned == ["f.yaml: end_function.record_ttl_s was removed: no longer needed (accepted for this minor version, refused from the next)"]


def test_version_and_the_shipped_example(capsys: pytest.CaptureFixture[str]) -> None:
    from proxy import __version__

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"callgate {__version__}"
    assert main(["config", "example"]) == 0
    assert capsys.readouterr().out == (Path(__file__).resolve().parents[1] / "config.example.yaml").read_text()


def test_a_closed_stdout_ends_quietly(tmp_path: Path) -> None:
    script = "import sys; from proxy.cli import main; sys.exit(main(['config', 'example']))"
    out = subprocess.run(f"{sys.executable} -c \"{script}\" | head -1", shell=True, capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith("# callgate") and "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr


def test_every_missing_variable_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as e:
        parse_config({"upstream": {"api_key": "${NOPE_A}"}, "auth": {"keys": [{"name": "k", "key": "${NOPE_B}", "scopes": ["relay"]}]}}, env={})
    assert str(e.value) == (
        "unset environment variables:\n  upstream.api_key: environment variable NOPE_A is not set (write ${NOPE_A:-default})\n"
        "  auth.keys[0].key: environment variable NOPE_B is not set (write ${NOPE_B:-default})"
    )


def test_check_finds_a_storage_path_that_cannot_be_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "afile").write_text("")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"storage:\n  path: {tmp_path}/afile/sub/cg.db\n")
    assert main(["check", "--config", str(cfg)]) == 1
    assert capsys.readouterr().err == f"callgate: {cfg}: storage.path: {tmp_path}/afile is a file, not a folder\n"


def test_an_unopenable_database_is_one_line_naming_it(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    assert _serve_error(tmp_path, f"{tmp_path}/afile/cg.db") == (
        f"callgate: cannot open the database (storage.path={tmp_path}/afile/cg.db): {tmp_path}/afile is a file, not a folder (ENOTDIR)\n"
    )


def _serve_error(tmp_path: Path, db: str, prefix: list[str] | None = None) -> str:
    """What ``callgate serve`` on the SQLite file ``db`` prints as it exits with 1
    (``prefix``: what the command runs under, e.g. another user)."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"storage:\n  path: {db}\n")
    cfg.chmod(0o644)
    out = subprocess.run([*(prefix or []), sys.executable, "-m", "proxy.cli", "serve", "--config", str(cfg), "--port", "0"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    return out.stderr


def test_a_yaml_error_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("upstream:\n  base_url: [unclosed\n")
    assert main(["check", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"callgate: {cfg}: not valid YAML") and f'in "{cfg}", line 3' in err and "<unicode string>" not in err


def test_the_lock_file_that_cannot_be_opened_is_named(tmp_path: Path) -> None:
    (tmp_path / "cg.db.lock").mkdir()  # a folder where the migration lock file goes
    assert _serve_error(tmp_path, f"{tmp_path}/cg.db") == (
        f"callgate: cannot open the database (storage.path={tmp_path}/cg.db): {tmp_path}/cg.db.lock: Is a directory (EISDIR)\n"
    )


def test_a_database_path_that_is_a_folder_names_the_os_error(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    assert _serve_error(tmp_path, f"{tmp_path}/db") == (
        f"callgate: unable to open database file (storage.path={tmp_path}/db): Is a directory (EISDIR)\n"
    )


def _as_nobody() -> list[str]:
    """The command prefix that runs a process as an unprivileged user (root may write
    anywhere), or nothing when this test already runs as one."""
    import os
    import shutil

    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: no way to be refused a file")
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A folder of its own that another user can reach (pytest's tmp_path is root's
    alone, mode 700)."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="callgate-perm-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_a_folder_it_may_not_write_names_the_os_error(shared_tmp: Path) -> None:
    """The operator's case of issue 30: SQLite says only "unable to open database file";
    the line adds the OS error and its errno name."""
    prefix = _as_nobody()
    tmp_path = shared_tmp
    (tmp_path / "ro").mkdir(mode=0o555)
    (tmp_path / "ro").chmod(0o555)
    assert _serve_error(tmp_path, f"{tmp_path}/ro/cg.db", prefix) == (
        f"callgate: unable to open database file (storage.path={tmp_path}/ro/cg.db): Permission denied (EACCES)\n"
    )


def test_a_database_file_it_may_not_write_is_refused_at_start(shared_tmp: Path) -> None:
    """SQLite opens such a file read-only without a word and fails at the first write
    (a traceback); it is refused at start instead, naming the OS error."""
    from .rows import store_at

    prefix = _as_nobody()
    tmp_path = shared_tmp
    store_at(tmp_path / "cg.db").close_sync()
    tmp_path.chmod(0o777)
    (tmp_path / "cg.db").chmod(0o444)
    (tmp_path / "cg.db.lock").chmod(0o666)
    assert _serve_error(tmp_path, f"{tmp_path}/cg.db", prefix) == (
        f"callgate: cannot open the database (storage.path={tmp_path}/cg.db): Permission denied (EACCES)\n"
    )


def test_several_removed_and_invalid_keys_are_reported_at_once() -> None:
    """An operator fixing a config learns every problem in one run, not one per restart."""
    with pytest.raises(ConfigError) as e:
        parse_config(
            {
                "control": {"webhook": {"attempts": 5}},
                "end_function": {"record_ttl_s": 60},
                "server": {"port": 70000, "prot": 1},
            },
            "f.yaml",
        )
    assert str(e.value) == (
        "f.yaml: invalid config\n"
        "  control.webhook.attempts was removed: replaced by control.webhook.max_age_s: a delivery is retried "
        "while the event is fresh (default 120 s)\n"
        "  end_function.record_ttl_s was removed: no longer needed: an ended call leaves memory at once; "
        "storage.retention_days deletes old ones\n"
        "  server.port: Input should be less than or equal to 65535\n"
        "  server.prot: Extra inputs are not permitted"
    )


def test_every_name_that_points_nowhere_is_reported_at_once() -> None:
    entry = {"name": "a", "base_url": "http://127.0.0.1:1/v1"}
    with pytest.raises(ConfigError) as e:
        parse_config(
            {"upstreams": [entry, entry], "routing": {"order": ["b"]}, "default_profile": "nope",
             "profiles": {"vip": {"extends": "gone"}}},
            "f.yaml",
        )
    lines = str(e.value).splitlines()
    assert lines[0] == "f.yaml: invalid config"
    assert [line.split(":")[0].strip() for line in lines[1:]] == [
        "default_profile", "profiles.vip.extends", "upstreams", "routing.order",
    ]


def test_safe_url_shows_no_key_no_query() -> None:
    from proxy.config import PoolEntry, safe_url

    assert safe_url("https://user:sk-secret@h.example/openai/deployments/d?api-version=1&api-key=sk-x#frag", "/chat/completions") == (
        "https://h.example/openai/deployments/d/chat/completions"
    )
    assert safe_url(PoolEntry(name="b", base_url="http://[::1]:8080/v1/")) == "http://[::1]:8080/v1/"
    assert safe_url("http://[::1]:8080/v1/", "/chat/completions") == "http://[::1]:8080/v1/chat/completions"
