#!/bin/sh
# labctl/1 reference device: a small environment sensor that speaks the lab's MQTT protocol,
# written only from docs/protocol.md, with POSIX sh, sed, awk, od, date and the Mosquitto
# command-line clients (mosquitto_pub, mosquitto_sub; stdbuf from GNU coreutils).
#
# It is a vendor's starting point: replace read_sensors() with your hardware and keep the rest.
#
#   VENDOR=acme DEVICE=thermo-1 LAB_HOST=showroom.lab LAB_PORT=8883 \
#   LAB_USER=acme LAB_PASS=… LAB_CAFILE=lab-ca.crt  ./device.sh
#
# Environment (defaults in brackets):
#   VENDOR, DEVICE      your vendor name (= your broker username) and this device's id
#   LAB_HOST [localhost], LAB_PORT [1883]
#   LAB_USER, LAB_PASS  broker username and password (TLS listener), or
#   LAB_CAFILE, LAB_CERT, LAB_KEY  the lab CA, and your client certificate and key
#   RATE_HZ [1]         telemetry rate, declared in the manifest
#   KEEPALIVE [15]      MQTT keepalive in seconds: the broker notices a dead device after 1.5×
#   SERIAL [$DEVICE-0001]
#
# Stop it with Ctrl-C or SIGTERM: it publishes `offline` and disconnects cleanly. If it dies
# (kill -9 of its process group, power cut, network loss) the broker publishes its Last Will
# `lost`. Commands are handled one at a time, in order of arrival.
set -u

: "${VENDOR:?set VENDOR to your vendor name (your broker username)}"
: "${DEVICE:?set DEVICE to this device id}"
LAB_HOST=${LAB_HOST:-localhost}
LAB_PORT=${LAB_PORT:-1883}
RATE_HZ=${RATE_HZ:-1}
KEEPALIVE=${KEEPALIVE:-15}
SERIAL=${SERIAL:-$DEVICE-0001}
MODEL="reference-sh"
HW_VERSION="none"
SW_VERSION="1.0.0"
MANIFEST_VERSION=1 # increase whenever the manifest's content changes

ROOT="lab/v1/$VENDOR/$DEVICE"
STREAM="env"

log() { printf '%s %s: %s\n' "$(date -u +%H:%M:%S)" "$DEVICE" "$*" >&2; }
die() { log "$*"; exit 2; }

printf '%s\n' "$VENDOR" | grep -Eq '^[a-z0-9][a-z0-9-]{0,62}$' || die "VENDOR must be [a-z0-9-]+"
printf '%s\n' "$DEVICE" | grep -Eq '^[a-z0-9][a-z0-9-]{0,62}$' || die "DEVICE must be [a-z0-9-]+"
printf '%s\n' "$RATE_HZ" | grep -Eq '^[0-9]+(\.[0-9]+)?$' || die "RATE_HZ must be a number"
command -v mosquitto_pub >/dev/null || die "needs mosquitto_pub (apt install mosquitto-clients)"
command -v mosquitto_sub >/dev/null || die "needs mosquitto_sub (apt install mosquitto-clients)"
# mosquitto_sub block-buffers its status lines when writing to a pipe; the device needs them
# at once (to announce `online` only once its subscriptions are in place, and to see a
# reconnect), so it runs mosquitto_sub line-buffered.
command -v stdbuf >/dev/null || die "needs stdbuf (GNU coreutils)"

WORK=$(mktemp -d) || die "cannot make a temporary directory"
FIFO="$WORK/sub"
mkdir "$WORK/done" # final answers by command id, to answer a repeated id without re-running
BOOT=$(date +%s)
RUNS=0              # noop commands executed since boot (the conformance op reports it)
SESSION=""
ONLINE=""
STOPPING=""
SUB_PID=""
TEL_PID=""

# --- small tools --------------------------------------------------------------------------

now() { # epoch seconds with milliseconds where date has %N, whole seconds otherwise
	t=$(date +%s.%N 2>/dev/null)
	case $t in
	*[!0-9.]* | *.) date +%s ;;
	*) printf '%s\n' "${t%??????}" ;;
	esac
}

new_session() { od -An -N6 -tx1 /dev/urandom | tr -d ' \n'; }

later_than() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 > b + 0) }'; }

# The JSON the lab sends is flat apart from "params"; these read one field with sed. A real
# device should use a JSON parser.
json_str() { printf '%s' "$2" | sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"\([^\"]*\)\".*/\1/p"; }
json_num() { printf '%s' "$2" | sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\(-\{0,1\}[0-9][0-9.eE+-]*\).*/\1/p"; }
json_params() { printf '%s' "$1" | sed -n 's/.*"params"[[:space:]]*:[[:space:]]*\({[^{}]*}\).*/\1/p'; }
without_params() { printf '%s' "$1" | sed 's/"params"[[:space:]]*:[[:space:]]*{[^{}]*}//'; }

# Every publish is QoS 1 (-q 1) over MQTT 5; mosquitto_pub waits for the broker's PUBACK.
pub() {
	mosquitto_pub -h "$LAB_HOST" -p "$LAB_PORT" -V mqttv5 -q 1 \
		${LAB_USER:+-u "$LAB_USER"} ${LAB_PASS:+-P "$LAB_PASS"} \
		${LAB_CAFILE:+--cafile "$LAB_CAFILE"} ${LAB_CERT:+--cert "$LAB_CERT"} \
		${LAB_KEY:+--key "$LAB_KEY"} "$@"
}

# --- payloads -----------------------------------------------------------------------------

manifest() { # $1 session
	printf '{"schema":"labctl/1","version":%s,"session":"%s",' "$MANIFEST_VERSION" "$1"
	printf '"device":{"vendor":"%s","id":"%s","model":"%s","serial":"%s","hw_version":"%s","sw_version":"%s"},' \
		"$VENDOR" "$DEVICE" "$MODEL" "$SERIAL" "$HW_VERSION" "$SW_VERSION"
	printf '"channels":[{"name":"temperature","unit":"°C","type":"float","rate_hz":%s},' "$RATE_HZ"
	printf '{"name":"humidity","unit":"%%RH","type":"float","rate_hz":%s},' "$RATE_HZ"
	printf '{"name":"uptime","unit":"s","type":"int","rate_hz":%s}],' "$RATE_HZ"
	printf '"commands":[{"op":"noop","timeout_ms":5000,"params_schema":{"type":"object",'
	printf '"properties":{"delay_ms":{"type":"integer","minimum":0,"maximum":60000}},'
	printf '"additionalProperties":false}},'
	printf '{"op":"identify","timeout_ms":2000,"params_schema":{"type":"object",'
	printf '"properties":{"seconds":{"type":"integer","minimum":1,"maximum":60}},'
	printf '"additionalProperties":false}}]}'
}

state() { printf '{"state":"%s","session":"%s","ts":%s}' "$1" "$2" "$(now)"; }

will() { printf '{"state":"lost","session":"%s"}' "$1"; } # no ts: the broker sends it later

read_sensors() { # $1 seq → "temperature humidity" (replace with your hardware)
	awk -v s="$1" 'BEGIN { printf "%.2f %.1f", 21 + 2 * sin(s / 30), 45 + 5 * cos(s / 50) }'
}

# --- telemetry ----------------------------------------------------------------------------

telemetry_loop() { # $1 session; runs in the background until told to stop
	trap 'exit 0' TERM # finish the current publish, then stop
	seq=0
	period=$(awk -v r="$RATE_HZ" 'BEGIN { printf "%.3f", 1 / r }')
	while :; do
		ts=$(now)
		sample=$(read_sensors "$seq")
		temperature=${sample% *}
		humidity=${sample#* }
		uptime=$(($(date +%s) - BOOT))
		pub -t "$ROOT/telemetry/$STREAM" -m "{\"session\":\"$1\",\"seq\":$seq,\"ts\":$ts,\"v\":{\"temperature\":$temperature,\"humidity\":$humidity,\"uptime\":$uptime}}" ||
			log "sample $seq not delivered" # a gap the lab will count; see store and forward
		seq=$((seq + 1))
		sleep "$period"
	done
}

start_telemetry() { telemetry_loop "$SESSION" & TEL_PID=$!; }

stop_telemetry() {
	[ -n "$TEL_PID" ] || return 0
	kill -TERM "$TEL_PID" 2>/dev/null
	wait "$TEL_PID" 2>/dev/null
	TEL_PID=""
}

# --- commands -----------------------------------------------------------------------------

respond() { pub -t "$ROOT/cmd/$1/res" -m "$2"; } # $1 id, $2 response

final() { # $1 id, $2 final response: remember it for a repeated id, then send it
	printf '%s' "$2" >"$WORK/done/$1"
	respond "$1" "$2"
	# keep the answers of the last 256 commands
	if [ "$(ls "$WORK/done" | wc -l)" -gt 256 ]; then
		(cd "$WORK/done" && ls -t | sed '1,128d' | xargs rm -f --)
	fi
}

accepted() { printf '{"id":"%s","status":"accepted"}' "$1"; }
succeeded() { printf '{"id":"%s","status":"succeeded","result":%s}' "$1" "$2"; }
refused() { # $1 id, $2 status (rejected|failed), $3 code, $4 message (no quotes)
	printf '{"id":"%s","status":"%s","error":{"code":"%s","message":"%s"}}' "$1" "$2" "$3" "$4"
}

int_param() { # $1 name, $2 params, $3 default, $4 min, $5 max → the value, or fail
	v=$(json_num "$1" "$2")
	v=${v:-$3}
	case $v in '' | *[!0-9]*) return 1 ;; esac
	[ "$v" -ge "$4" ] && [ "$v" -le "$5" ] && printf '%s' "$v"
}

handle_request() { # $1 topic, $2 payload
	id=${1%/req}
	id=${id##*/}
	printf '%s\n' "$id" | grep -Eq '^[A-Za-z0-9_-]{1,64}$' || {
		log "ignoring a request with an unusable id"
		return
	}
	if [ -f "$WORK/done/$id" ]; then # a repeated id: answer as before, do not run it again
		respond "$id" "$(cat "$WORK/done/$id")"
		return
	fi
	top=$(without_params "$2")
	op=$(json_str op "$top")
	deadline=$(json_num deadline "$top")
	params=$(json_params "$2")
	if [ "$(json_str id "$top")" != "$id" ] || [ -z "$op" ] || [ -z "$deadline" ]; then
		final "$id" "$(refused "$id" rejected bad_request "needs id (as in the topic), op and deadline")"
		return
	fi
	if later_than "$(now)" "$deadline"; then
		final "$id" "$(refused "$id" rejected expired "the deadline passed before the command could start")"
		return
	fi
	case $op in
	noop) do_noop "$id" "$params" ;;
	identify) do_identify "$id" "$params" ;;
	*) final "$id" "$(refused "$id" rejected unknown_op "this device has no operation $op")" ;;
	esac
}

do_noop() { # the conformance operation: accepted, wait delay_ms, succeeded {"runs": n}
	delay=$(int_param delay_ms "$2" 0 0 60000) || {
		final "$1" "$(refused "$1" rejected bad_params "delay_ms must be an integer 0..60000")"
		return
	}
	respond "$1" "$(accepted "$1")"
	RUNS=$((RUNS + 1))
	[ "$delay" -eq 0 ] || sleep "$(awk -v ms="$delay" 'BEGIN { printf "%.3f", ms / 1000 }')"
	final "$1" "$(succeeded "$1" "{\"runs\":$RUNS}")"
}

do_identify() { # blink for a while (here: log it)
	seconds=$(int_param seconds "$2" 5 1 60) || {
		final "$1" "$(refused "$1" rejected bad_params "seconds must be an integer 1..60")"
		return
	}
	respond "$1" "$(accepted "$1")"
	log "identify: blinking for $seconds s"
	final "$1" "$(succeeded "$1" "{\"seconds\":$seconds}")"
}

# --- presence and the connection ----------------------------------------------------------

go_online() {
	[ -z "$ONLINE" ] || return 0
	pub -r -t "$ROOT/state" -m "$(state online "$SESSION")" || return 1
	ONLINE=1
	log "online, session $SESSION"
	start_telemetry
}

stop() { # SIGTERM, SIGINT: offline, then a clean disconnect (the broker drops the will)
	STOPPING=1
	stop_telemetry
	if [ -n "$ONLINE" ]; then
		pub -r -t "$ROOT/state" -m "$(state offline "$SESSION")" && log "offline"
	fi
	if [ -n "$SUB_PID" ]; then
		kill -TERM "$SUB_PID" 2>/dev/null
		wait "$SUB_PID" 2>/dev/null
	fi
	exit 0
}

# One connection, one session: manifest, then the presence connection (Last Will, command
# and controller subscriptions), then `online` once subscribed, then telemetry. Returns when
# the connection ends; mosquitto_sub reconnects by itself, so a second CONNACK ends it too.
connect_cycle() {
	SESSION=$(new_session)
	ONLINE=""
	MANIFEST=$(manifest "$SESSION")
	pub -r -t "$ROOT/manifest" -m "$MANIFEST" || return 1
	rm -f "$FIFO"
	mkfifo "$FIFO" || die "cannot make a fifo in $WORK"
	# MQTT 3.1.1 here on purpose: mosquitto_sub -V mqttv5 stopped by a signal disconnects
	# with "disconnect with Will message", and the broker would publish `lost` after our
	# `offline`. With 3.1.1 SIGTERM is a clean DISCONNECT. Clean session: commands sent while
	# the device was away are not queued for it.
	stdbuf -oL mosquitto_sub -h "$LAB_HOST" -p "$LAB_PORT" -V mqttv311 -q 1 -v -d \
		-i "$VENDOR-$DEVICE" -k "$KEEPALIVE" \
		${LAB_USER:+-u "$LAB_USER"} ${LAB_PASS:+-P "$LAB_PASS"} \
		${LAB_CAFILE:+--cafile "$LAB_CAFILE"} ${LAB_CERT:+--cert "$LAB_CERT"} \
		${LAB_KEY:+--key "$LAB_KEY"} \
		--will-topic "$ROOT/state" --will-payload "$(will "$SESSION")" --will-qos 1 --will-retain \
		-t "$ROOT/cmd/+/req" -t "lab/v1/_ctl/+/state" -t "lab/v1/_err/$VENDOR/$DEVICE" \
		>"$FIFO" 2>&1 &
	SUB_PID=$!
	connacks=0
	while IFS= read -r line; do
		case $line in
		"Client "*" received CONNACK (0)"*)
			connacks=$((connacks + 1))
			[ "$connacks" -eq 1 ] || break # reconnected by itself: start over, new session
			;;
		"Client "*" received SUBACK"*) go_online ;;
		"$ROOT/cmd/"*"/req "*) handle_request "${line%% *}" "${line#* }" ;;
		"lab/v1/_ctl/"*) # a controller came online: it may have missed the retained manifest
			case ${line#* } in
			*'"online"'*) [ -z "$ONLINE" ] || pub -r -t "$ROOT/manifest" -m "$MANIFEST" ;;
			esac
			;;
		"lab/v1/_err/"*) log "the lab refused a message: ${line#* }" ;;
		"Error"* | "Connection error"*) log "$line" ;;
		esac
	done <"$FIFO"
	stop_telemetry
	kill -TERM "$SUB_PID" 2>/dev/null
	wait "$SUB_PID" 2>/dev/null
	SUB_PID=""
}

trap stop INT TERM
trap 'rm -rf "$WORK"' EXIT

backoff=1
while :; do
	connect_cycle && backoff=1
	[ -z "$STOPPING" ] || exit 0
	log "connection ended; reconnecting in $backoff s with a new session"
	sleep "$backoff"
	backoff=$((backoff < 30 ? backoff * 2 : 30))
done
