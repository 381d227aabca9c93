#!/usr/bin/env bash
# Lints the dialplan with asterisklint (pip install asterisklint==0.4.3).
# Fails when asterisklint reports anything at all (error, warning or hint),
# or when a dialplan/*.conf file is not included by extensions.conf and so
# would escape the check.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v asterisklint >/dev/null; then
    echo "check.sh: asterisklint not found (pip install asterisklint==0.4.3)" >&2
    exit 2
fi

status=0
for file in *.conf; do
    [ "$file" = extensions.conf ] && continue
    if ! grep -qxF "#include \"$file\"" extensions.conf; then
        echo "check.sh: $file is not included by extensions.conf" >&2
        status=1
    fi
done

# ALINT_IGNORE emptied: no message class may be silenced from outside.
# PYTHONWARNINGS: a newer Python's warnings about asterisklint's own code are
# not dialplan problems.
if ! report=$(ALINT_IGNORE= PYTHONWARNINGS=ignore asterisklint dialplan-check extensions.conf 2>&1) \
        || [ -n "$report" ]; then
    printf '%s\n' "$report" >&2
    status=1
fi

if [ "$status" -eq 0 ]; then
    echo "check.sh: dialplan clean ($(ls *.conf | wc -l) files)"
fi
exit "$status"
