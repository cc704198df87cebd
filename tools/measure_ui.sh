#!/usr/bin/env bash
# How the UI feels in a real terminal (tmux): time from launch until all three columns show
# generated text, and from a → key press until the focused column has visibly restarted at the
# new α. Polls the screen every 5 ms, so figures are upper bounds within that.
#
#   tools/measure_ui.sh [BINARY] [ARGS…]      (default: target/release/lerpscope, the demo pair)
set -euo pipefail
bin=${1:-target/release/lerpscope}
shift || true
sock=lerpscope-measure-$$
trap 'tmux -L "$sock" kill-server 2>/dev/null || true' EXIT
now() { date +%s%N; }
screen() { tmux -L "$sock" capture-pane -p -t ui; }
wait_for() { # PATTERN (extended regex, counted per line) COUNT
  local deadline=$(( $(now) + 30000000000 ))
  until [ "$(screen | grep -cE "$1" || true)" -ge "$2" ]; do
    [ "$(now)" -lt "$deadline" ] || { echo "timed out waiting for $1" >&2; screen >&2; exit 1; }
    sleep 0.005
  done
}
t0=$(now)
tmux -L "$sock" new-session -d -x 120 -y 40 -s ui "$bin $*; sleep 30"
# A column has text once its title shows tokens streaming (▸ N tok) or done (✓).
wait_for '(▸ [1-9][0-9]* tok|✓).*(▸ [1-9][0-9]* tok|✓).*(▸ [1-9][0-9]* tok|✓)' 1
t1=$(now)
wait_for '✓.*✓.*✓' 1
tmux -L "$sock" send-keys -t ui Right
t2=$(now)
wait_for 'α = 0\.05' 1
t3=$(now)
echo "launch → text in all three columns: $(( (t1 - t0) / 1000000 )) ms"
echo "→ key → focused column restarted at α = 0.05: $(( (t3 - t2) / 1000000 )) ms"
tmux -L "$sock" send-keys -t ui q
