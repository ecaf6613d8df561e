#!/usr/bin/env bash
# A virtual microphone for machines without a sound card (CI, containers): PulseAudio with a null
# sink "vsink" whose monitor is remapped to a source "vmic" (the default source). Capture through
# the ALSA device "pulse"; play into the microphone with `paplay --device=vsink FILE`.
#
#   scripts/virtual-mic.sh start|stop|restart|status   (uses $XDG_RUNTIME_DIR, default /tmp/edge-dac-pulse)
#   eval "$(scripts/virtual-mic.sh env)"                # export the variables clients need
#
# Start it before importing sounddevice: PortAudio lists devices once, at initialisation.
set -euo pipefail
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp/edge-dac-pulse}
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
export PULSE_SERVER="unix:$XDG_RUNTIME_DIR/pulse/native"

start() {
  pactl info >/dev/null 2>&1 && return 0
  # -n: no default.pa (no hardware probing); root is fine here (CI containers run as root).
  pulseaudio -D -n --exit-idle-time=-1 --log-target=stderr --log-level=error \
    --load=module-native-protocol-unix \
    --load="module-null-sink sink_name=vsink rate=16000" \
    --load="module-remap-source master=vsink.monitor source_name=vmic" 2>/dev/null
  for _ in $(seq 50); do pactl info >/dev/null 2>&1 && break; sleep 0.1; done
  pactl set-default-source vmic
}

stop() {
  pactl info >/dev/null 2>&1 || return 0
  pulseaudio -k 2>/dev/null || true  # only the server of this runtime dir
  for _ in $(seq 50); do pactl info >/dev/null 2>&1 || break; sleep 0.1; done
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) pactl info | grep -E "Server String|Default Source" ;;
  env) echo "export XDG_RUNTIME_DIR=$XDG_RUNTIME_DIR PULSE_SERVER=$PULSE_SERVER" ;;
  *) echo "usage: $0 start|stop|restart|status|env" >&2; exit 2 ;;
esac
