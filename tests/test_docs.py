"""The documentation against the code: README's size and opening, links that
resolve, and the tables that copy an enum or a list of the code's (reject codes,
upstream failure kinds, metric names, routes)."""

from __future__ import annotations

import re
from pathlib import Path

from proxy.core.commands import RejectReason
from proxy.errors import UpstreamFailure
from proxy.server.app import build_app

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#+\s+(.*)$", re.MULTILINE)


def _pages() -> list[Path]:
    return [README, ROOT / "CHANGELOG.md", *sorted(DOCS.glob("*.md"))]


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[`*_]", "", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {_anchor(h) for h in _HEADING.findall(page.read_text(encoding="utf-8"))}


def test_readme_opens_with_the_two_commands_and_stays_short() -> None:
    text = README.read_text(encoding="utf-8")
    fence = text.split("```")[1]
    assert [line.split("#")[0].strip() for line in fence.strip().splitlines()[1:]] == ["make demo", "make test"]
    assert len(text.encode()) < 16_000 and text.count("\n") <= 210


def test_every_relative_link_resolves() -> None:
    broken = []
    for page in _pages():
        for target in _LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.name}: {target}")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert broken == []


def test_readme_links_every_page_of_docs() -> None:
    text = README.read_text(encoding="utf-8")
    assert [p.name for p in sorted(DOCS.glob("*.md")) if f"(docs/{p.name}" not in text] == []


def test_the_reject_code_table_is_the_enum() -> None:
    text = (DOCS / "control-events.md").read_text(encoding="utf-8")
    table = text.split("<!-- reject-codes")[1].split("\n\n")[0]
    codes = re.findall(r"^\| `([a-z_]+)` \|", table, re.MULTILINE)
    assert codes == [r.value for r in RejectReason]
    metrics = (DOCS / "operations.md").read_text(encoding="utf-8")
    line = next(l for l in metrics.splitlines() if l.startswith("| `callgate_commands_total`"))
    assert re.findall(r"`([a-z_]+)`", line.split("reject code")[1]) == [r.value for r in RejectReason]


def test_the_metrics_table_names_every_metric_and_upstream_failure_kind() -> None:
    from proxy import metrics
    from proxy.server import scrape

    text = (DOCS / "operations.md").read_text(encoding="utf-8")
    documented = re.findall(r"^\| `(callgate_[a-z_]+)` \|", text, re.MULTILINE)
    source = Path(metrics.__file__).read_text(encoding="utf-8") + Path(scrape.__file__).read_text(encoding="utf-8")
    exported = re.findall(r'(?:Counter|Histogram|GaugeMetricFamily)\(\s*"(callgate_[a-z_]+)"', source)
    assert len(exported) == len([n for n in metrics.__all__ if n.isupper()]) + 3
    assert sorted(documented) == sorted(exported)
    line = next(l for l in text.splitlines() if l.startswith("| `callgate_upstream_errors_total`"))
    assert re.findall(r"`([a-z_]+)`", line.split("failed replies")[1]) == [k.value for k in UpstreamFailure]


def test_the_readme_route_table_is_the_apps_routes() -> None:
    from proxy.config import Config

    app = build_app(Config())
    served = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter") or info.get("prefix")
        if route.method != "HEAD" and path:
            served.add(path)
    text = README.read_text(encoding="utf-8")
    table = text.split("## HTTP API")[1].split("\n\n")[1]
    named = set()
    for cell in re.findall(r"^\| ([^|]+) \|", table, re.MULTILINE)[2:]:
        named |= {p for p in re.findall(r"`(?:[A-Z]+ )?(/[^`]*)`", cell)}
    admin = {p for p in served if p.startswith(("/v1/admin/", "/ui"))}
    assert named - {"/ui/", "/v1/admin/…"} == served - admin


def test_one_version_everywhere_and_a_changelog_entry_for_it() -> None:
    import json
    import tomllib

    import proxy
    from proxy.server.openapi import spec_bytes

    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    assert (proxy.__version__, json.loads(spec_bytes())["info"]["version"]) == (version, version)
    assert f"\n## [{version}]\n" in (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
