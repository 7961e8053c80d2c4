"""bicepconfig.json, the CI lint, the azd hook of Elastic Premium, and template hygiene the linter enforces."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.infra.test_templates import BICEP_FILES, parse

ROOT = Path(__file__).resolve().parents[2]
HOOK = ROOT / "scripts" / "predeploy_premium.sh"

# The linter rules that catch what would hurt a deployment or leak a secret: errors, not warnings.
MUST_BE_ERRORS = {
    "no-hardcoded-env-urls",
    "no-unused-params",
    "no-unused-vars",
    "no-unnecessary-dependson",
    "outputs-should-not-contain-secrets",
    "secure-secrets-in-params",
    "secure-parameter-default",
    "use-secure-value-for-secure-inputs",
    "use-stable-resource-identifiers",
    "no-loc-expr-outside-params",
}


def test_bicepconfig_raises_the_rules_that_matter_to_errors():
    config = json.loads((ROOT / "bicepconfig.json").read_text(encoding="utf-8"))
    core = config["analyzers"]["core"]
    assert core["enabled"] is True
    levels = {name: rule["level"] for name, rule in core["rules"].items()}
    assert {name for name in MUST_BE_ERRORS if levels.get(name) != "error"} == set()


def test_ci_lints_every_template_with_the_bicepconfig():
    workflow = (ROOT / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8")
    assert "az bicep build --file infra/main.bicep" in workflow
    assert "az bicep lint --file" in workflow and "find infra -name '*.bicep'" in workflow
    assert "test -f bicepconfig.json" in workflow


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.name)
def test_no_unused_parameter_or_variable(path: Path):
    # what no-unused-params / no-unused-vars (errors in bicepconfig.json) would refuse
    text = path.read_text(encoding="utf-8")
    parsed = parse(path)
    for name in [*parsed.get("parameters", {}), *parsed.get("variables", {})]:
        assert len(re.findall(rf"\b{name}\b", text)) >= 2, f"{path.name}: {name} is declared and never used"


def test_azure_yaml_runs_the_premium_hook_before_deploy():
    text = (ROOT / "azure.yaml").read_text(encoding="utf-8")
    assert re.search(r"^    hooks:\n(      #.*\n)+      predeploy:\n        shell: sh\n", text, re.MULTILINE)
    assert "run: ./scripts/predeploy_premium.sh" in text
    assert os.access(HOOK, os.X_OK)


def run_hook(
    tmp_path: Path, env: dict[str, str], refuse: str | None = None
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Runs the hook with stand-ins for az and python on PATH that log their arguments; the az stand-in
    fails (exit 1) on a call whose arguments contain `refuse`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "calls.log"
    refused = f'*"{refuse}"*) exit 1;; ' if refuse else ""
    (bin_dir / "az").write_text(
        f'#!/bin/sh\necho "az $*" >> {log}\n'
        f'case "$*" in {refused}'
        '*"signed-in-user"*) echo 00000000-0000-0000-0000-000000000001;; '
        '*"storage account show"*) echo /subscriptions/s/providers/Microsoft.Storage/storageAccounts/st;; '
        '*"functionapp show"*) echo /subscriptions/s/resourceGroups/rg-test/providers/Microsoft.Web/sites/'
        "func-api-test;; "
        '*"blob upload"*) f=$(echo "$*" | sed -n "s/.*--file \\([^ ]*\\).*/\\1/p"); cp "$f" '
        + str(tmp_path)
        + "/uploaded.zip;; esac\n",
        encoding="utf-8",
    )
    (bin_dir / "fakepython").write_text(
        f'#!/bin/sh\necho "python $*" >> {log}\n'
        'while [ $# -gt 0 ]; do if [ "$1" = "--target" ]; then mkdir -p "$2" && touch "$2/dep.py"; fi; shift; done\n',
        encoding="utf-8",
    )
    for tool in ("az", "fakepython"):
        (bin_dir / tool).chmod(0o755)
    full_env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PYTHON": "fakepython",
        "CALLKEEPER_UPLOAD_WAIT": "0",
        **env,
    }
    proc = subprocess.run(["sh", str(HOOK)], cwd=ROOT, env=full_env, capture_output=True, text=True, check=False)
    calls = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    return proc, calls


def test_the_hook_does_nothing_on_flex_consumption(tmp_path: Path):
    proc, calls = run_hook(tmp_path, {"AZURE_FUNCTIONS_HOSTING_PLAN": "FlexConsumption"})
    assert proc.returncode == 0 and calls == []


def test_the_hook_asks_for_provision_when_the_outputs_are_missing(tmp_path: Path):
    proc, calls = run_hook(tmp_path, {"AZURE_FUNCTIONS_HOSTING_PLAN": "ElasticPremium"})
    assert proc.returncode == 1 and "azd provision" in proc.stderr and calls == []


PREMIUM_ENV = {
    "AZURE_FUNCTIONS_HOSTING_PLAN": "ElasticPremium",
    "AZURE_RESOURCE_GROUP": "rg-test",
    "SERVICE_API_NAME": "func-api-test",
    "AZURE_STORAGE_ACCOUNT_NAME": "sttest",
    "AZURE_STORAGE_DEPLOYMENT_CONTAINER_NAME": "app-package-test",
}


SYNC = (
    "az rest --method post --url /subscriptions/s/resourceGroups/rg-test/providers/Microsoft.Web/sites/"
    "func-api-test/syncfunctiontriggers?api-version=2024-04-01 --output none"
)
RESTART = "az functionapp restart --resource-group rg-test --name func-api-test --output none"


def test_the_hook_uploads_the_package_restarts_the_app_syncs_triggers_and_stops_azd_on_elastic_premium(
    tmp_path: Path,
):
    proc, calls = run_hook(tmp_path, PREMIUM_ENV)
    assert proc.returncode == 3, proc.stderr
    assert "callkeeper is deployed" in proc.stdout and "409" in proc.stdout
    upload = next(c for c in calls if "storage blob upload" in c)
    assert "--auth-mode login" in upload and "--account-name sttest" in upload
    assert "--container-name app-package-test" in upload and "--name callkeeper.zip" in upload
    # upload, then restart, then sync the triggers (Learn: run from a package URL) as the last call
    assert calls.index(upload) < calls.index(RESTART) < calls.index(SYNC) == len(calls) - 1
    grant = next(c for c in calls if "role assignment create" in c)
    assert "Storage Blob Data Contributor" in grant and grant.endswith(
        "/blobServices/default/containers/app-package-test --output none"
    )
    with zipfile.ZipFile(tmp_path / "uploaded.zip") as package:
        names = set(package.namelist())
    assert {"function_app.py", "host.json", "requirements.txt", "shared/__init__.py"} <= names
    assert ".python_packages/lib/site-packages/dep.py" in names
    assert not any("__pycache__" in name for name in names)


def test_the_hook_installs_linux_wheels_for_the_functions_platform_whatever_machine_runs_it(tmp_path: Path):
    proc, calls = run_hook(tmp_path, PREMIUM_ENV)
    assert proc.returncode == 3, proc.stderr
    (pip,) = [c for c in calls if c.startswith("python -m pip install")]
    args = pip.split()
    for flag, value in (
        ("--platform", "manylinux2014_x86_64"),
        ("--only-binary", None),
        ("--python-version", "3.11"),
        ("--implementation", "cp"),
        ("-r", "requirements.txt"),
    ):
        if value is None:
            assert "--only-binary=:all:" in args, pip
        else:
            assert args[args.index(flag) + 1] == value, pip
    assert args[args.index("--target") + 1].endswith("/app/.python_packages/lib/site-packages"), pip


def test_the_hook_run_alone_deploys_without_stopping(tmp_path: Path):
    proc, calls = run_hook(tmp_path, {**PREMIUM_ENV, "CALLKEEPER_DEPLOY_ONLY": "1"})
    assert proc.returncode == 0, proc.stderr
    assert calls[-3] == RESTART and calls[-1] == SYNC
    assert "callkeeper is deployed" not in proc.stdout


def test_the_hook_fails_when_a_call_to_azure_fails(tmp_path: Path):
    # set -e: a refused sync (say, no right on the app) is an error, not a silent half-deployment
    proc, calls = run_hook(tmp_path, PREMIUM_ENV, refuse="syncfunctiontriggers")
    assert proc.returncode == 1 and "callkeeper is deployed" not in proc.stdout
    assert calls[-1].startswith("az rest --method post")


def test_checkov_leaves_out_only_the_region_guard_which_declares_no_resource():
    spec = importlib.util.spec_from_file_location("check_infra", ROOT / "scripts" / "check_infra.py")
    assert spec and spec.loader
    check_infra = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check_infra)
    assert set(check_infra.NOT_FOR_CHECKOV) == {"infra/core/guard/hosting-region.bicep"}
    for path, reason in check_infra.NOT_FOR_CHECKOV.items():
        parsed = parse(ROOT / path)
        assert not parsed.get("resources") and not parsed.get("modules"), path
        assert "fail()" in (ROOT / path).read_text(encoding="utf-8") and "fail()" in reason
    # every other template is one checkov reads (the guard is the only one with fail())
    for path in BICEP_FILES:
        if str(path.relative_to(ROOT)) not in check_infra.NOT_FOR_CHECKOV:
            assert "fail(" not in path.read_text(encoding="utf-8"), path
