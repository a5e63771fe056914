#!/usr/bin/env bash
# How long `ftkit --help` and `ftkit finetune --help` take (goal: under 0.3 s), median of 11 runs each,
# next to a bare `python -c pass` for the interpreter's own start-up. Writes bench/results/cli_latency.json.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
time_cmd() { for _ in $(seq 11); do /usr/bin/time -f %e "$@" >/dev/null 2>>/tmp/ftkit-latency.$$ ; tail -n1 /tmp/ftkit-latency.$$; done | median; }
python=$(time_cmd "$BIN/python" -c pass)
help=$(time_cmd "$BIN/ftkit" --help)
finetune=$(time_cmd "$BIN/ftkit" finetune --help)
rm -f /tmp/ftkit-latency.$$
mkdir -p bench/results
printf '{"python_startup_s": %s, "ftkit_help_s": %s, "ftkit_finetune_help_s": %s, "runs": 11, "statistic": "median"}\n' \
  "$python" "$help" "$finetune" | tee bench/results/cli_latency.json
