"""`make audit`: pip-audit over the project's environment, with an honest verdict.

pip-audit reports "No known vulnerabilities found" even when it could check nothing (every
package "not found" because the advisory service was unreachable, or a mirror without PyPI's
JSON API answered). This reads its JSON and says which it was.
Exit codes: 0 audited and clean, 1 vulnerabilities found, 2 could not audit.
"""

from __future__ import annotations

import json
import subprocess
import sys

PIP_AUDIT = [
    sys.executable,
    "-m",
    "pip_audit",
    "--local",
    "--skip-editable",
    "--format",
    "json",
    "--progress-spinner",
    "off",
    *sys.argv[1:],
]


def main() -> int:
    run = subprocess.run(PIP_AUDIT, capture_output=True, text=True, check=False)  # noqa: S603
    try:
        report = json.loads(run.stdout)
    except json.JSONDecodeError:
        last = (run.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"make audit: pip-audit could not reach its advisory database ({last}).")
        print("make audit: nothing was audited; run it where https://pypi.org is reachable.")
        return 2
    dependencies = report.get("dependencies", [])
    audited = [d for d in dependencies if "skip_reason" not in d]
    vulnerable = [d for d in audited if d.get("vulns")]
    if not audited:
        print(
            f"make audit: none of the {len(dependencies)} installed packages could be checked "
            "(the advisory database, PyPI's JSON API, did not know them: offline or a mirror)."
        )
        print("make audit: nothing was audited; run it where https://pypi.org is reachable.")
        return 2
    for dependency in vulnerable:
        for vuln in dependency["vulns"]:
            fixes = ", ".join(vuln.get("fix_versions", [])) or "no fix yet"
            print(f"{dependency['name']} {dependency['version']}: {vuln['id']} (fixed in {fixes})")
    skipped = len(dependencies) - len(audited)
    print(
        f"make audit: {len(audited)} packages audited, {skipped} skipped, "
        f"{len(vulnerable)} with known vulnerabilities."
    )
    return 1 if vulnerable else 0


if __name__ == "__main__":
    sys.exit(main())
