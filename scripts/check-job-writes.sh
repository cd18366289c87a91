#!/usr/bin/env bash
# Only the job crate (crates/job) writes a job's lifecycle columns: state, attempt, retries,
# the lease and the token. Fails, naming the place, when any other production code does.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 - <<'PY'
import pathlib, re, sys

GUARDED = re.compile(r"\b(state|attempt|retries|lease_expires_ms|token_hash|event_seq)\s*=", re.I)
WRITE = re.compile(r"(UPDATE\s+jobs\b[^\"]*|INSERT\s+INTO\s+jobs\b[^\"]*|DELETE\s+FROM\s+jobs\b[^\"]*)", re.I)
bad = []
for root in ("services", "shared", "crates"):
    for path in pathlib.Path(root).rglob("*.rs"):
        if path.parts[:2] == ("crates", "job"):
            continue
        text = path.read_text()
        # Unit tests at the bottom of a file may build fixtures directly.
        text = text.split("#[cfg(test)]")[0]
        for m in WRITE.finditer(text):
            stmt = m.group(1)
            head = stmt.split()[0].upper()
            if head != "UPDATE" or GUARDED.search(stmt.split("WHERE")[0]):
                line = text[: m.start()].count("\n") + 1
                bad.append(f"{path}:{line}: {' '.join(stmt.split())[:100]}")
if bad:
    print("Job lifecycle columns are written outside crates/job (use job::transition):")
    print("\n".join("  " + b for b in bad))
    sys.exit(1)
print("job lifecycle writes: only in crates/job")
PY
