#!/usr/bin/env python3
"""Put the cost table (and, when the preview did not run, why) into the stack's preview comment.

``pulumi/actions`` (``comment-on-pr: true``) keeps one comment per stack: it finds its
previous comment by a body that starts with ``#### :tropical_drink: `preview` on
<project>/<stack-name>`` and contains ``<summary>Pulumi report</summary>``, and replaces
it (pulumi/actions@v7.0.0 src/libs/pr.ts, handlePullRequestMessage). This script finds the
same comment and appends the cost section, replacing the one a previous run appended; if
the action posted nothing (the preview failed or was skipped) it creates the comment with
that heading, which the action edits in place on the next push.

Usage: pr_comment.py STACK_NAME COST_FILE [STATUS_FILE]   (in the project folder: Pulumi.yaml names the project)
Environment: GITHUB_TOKEN, GITHUB_API_URL, GITHUB_REPOSITORY, PR_NUMBER; PREVIEW_OUTCOME (the
preview step's outcome: a failure is said above the cost, since the report is then an old one).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from pathlib import Path
from typing import Any, Optional

import yaml

#: What pulumi/actions@v7.0.0 (src/libs/pr.ts) puts in every comment it may edit.
PULUMI_SUMMARY = "<summary>Pulumi report</summary>"
#: Where our section starts; everything after it is ours and replaced on each run.
MARKER = "<!-- gpu-fleet: cost -->"
#: GitHub rejects comments over 65,536 characters; pulumi/actions keeps its own under 64,000.
MAX_BODY = 65_000


def heading(project: str, stack_name: str) -> str:
    """The heading pulumi/actions gives a preview comment (src/libs/pr.ts)."""
    return f"#### :tropical_drink: `preview` on {project}/{stack_name}"


def compose(existing: Optional[str], head: str, cost: str, status: str) -> str:
    """The new comment body: the action's report (or a stub with the same heading), then ours."""
    ours = "\n\n".join(part for part in (MARKER, status.strip(), cost.strip()) if part)
    if existing is None:
        base = f"{head}\n\n<details>\n{PULUMI_SUMMARY}\n\nNo preview output in this run.\n</details>"
    else:
        base = existing.split(MARKER, 1)[0].rstrip()
    body = f"{base}\n\n{ours}\n"
    if len(body) > MAX_BODY:  # keep our section whole: trim the report above it
        base = base[: max(0, MAX_BODY - len(ours) - 100)] + "\n\n(report trimmed)\n</pre></details>"
        body = f"{base}\n\n{ours}\n"
    return body


def _request(method: str, url: str, token: str, payload: Optional[dict] = None) -> Any:
    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
        "Content-Type": "application/json", "X-GitHub-Api-Version": "2022-11-28"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"null")


def find_comment(api: str, repo: str, number: str, token: str, head: str) -> Optional[dict]:
    """The stack's preview comment (the action's matching rule), scanning every page."""
    page = 1
    while True:
        comments = _request("GET", f"{api}/repos/{repo}/issues/{number}/comments?per_page=100&page={page}", token)
        for comment in comments:
            body = comment.get("body") or ""
            if body.startswith(head) and PULUMI_SUMMARY in body:
                return comment
        if len(comments) < 100:
            return None
        page += 1


def main(argv: list[str]) -> int:
    project = yaml.safe_load(Path("Pulumi.yaml").read_text())["name"]
    head, cost_file = heading(project, argv[1]), Path(argv[2])
    status = Path(argv[3]).read_text() if len(argv) > 3 and Path(argv[3]).exists() else ""
    if os.environ.get("PREVIEW_OUTCOME") == "failure":
        status = ("**The preview failed in this run** (see the job log); a report above is from an earlier run."
                  f"\n\n{status}").strip()
    cost = cost_file.read_text() if cost_file.exists() else "Cost table unavailable (see the offline plan steps)."
    env = os.environ
    api, repo, number, token = env["GITHUB_API_URL"], env["GITHUB_REPOSITORY"], env["PR_NUMBER"], env["GITHUB_TOKEN"]
    comment = find_comment(api, repo, number, token, head)
    body = compose(comment["body"] if comment else None, head, cost, status)
    if comment:
        _request("PATCH", f"{api}/repos/{repo}/issues/comments/{comment['id']}", token, {"body": body})
    else:
        _request("POST", f"{api}/repos/{repo}/issues/{number}/comments", token, {"body": body})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
