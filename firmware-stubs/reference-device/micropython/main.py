"""labctl/1 reference device for a microcontroller (MicroPython, umqtt.simple).

The same device as ../device.sh, for an ESP32-class board: a small environment sensor that
follows docs/protocol.md — manifest, presence with a Last Will, telemetry, and the commands
``noop`` (the conformance operation) and ``identify``. Copy it to the board as ``main.py``
with a ``config.py`` beside it::

    WIFI_SSID = "lab-showroom"
    WIFI_PASSWORD = "..."
    LAB_HOST = "showroom.lab"
    LAB_PORT = 8883
    LAB_USER = "acme"          # your vendor name
    LAB_PASSWORD = "..."
    LAB_SSL = True
    VENDOR = "acme"
    DEVICE = "thermo-1"

umqtt.simple speaks MQTT 3.1.1, which is all labctl/1 needs (commands carry their deadline in
the payload). It does not ping by itself, so the main loop does. Commands are handled one at
a time, in order of arrival. Stop it with Ctrl-C on the REPL: it publishes ``offline`` and
disconnects cleanly; a reset or power cut leaves the Last Will ``lost`` to the broker.

Not run in the lab's CI (it needs a board); keep it in step with device.sh by hand.
"""

import json
import time

import config
import machine
import network
import ntptime
import ubinascii
import uos
from umqtt.simple import MQTTClient

MODEL = "reference-upy"
HW_VERSION = "esp32"
SW_VERSION = "1.0.0"
MANIFEST_VERSION = 1  # increase whenever the manifest's content changes
RATE_HZ = 1
KEEPALIVE_S = 15
STREAM = "env"
REMEMBER = 128  # final answers kept to answer a repeated command id

ROOT = f"lab/v1/{config.VENDOR}/{config.DEVICE}"
# MicroPython ports count time from 2000-01-01 or from 1970-01-01; the lab wants Unix time.
EPOCH_OFFSET = 946684800 if time.gmtime(0)[0] == 2000 else 0


def now():
    """Unix epoch seconds (set by NTP at boot), with milliseconds."""
    return time.time() + EPOCH_OFFSET + (time.ticks_ms() % 1000) / 1000


def new_session():
    """12 random hex characters: a new one for every connection."""
    return ubinascii.hexlify(uos.urandom(6)).decode()


def manifest(session):
    """The device's self-description for ``session``."""
    return {
        "schema": "labctl/1",
        "version": MANIFEST_VERSION,
        "session": session,
        "device": {
            "vendor": config.VENDOR,
            "id": config.DEVICE,
            "model": MODEL,
            "serial": ubinascii.hexlify(machine.unique_id()).decode(),
            "hw_version": HW_VERSION,
            "sw_version": SW_VERSION,
        },
        "channels": [
            {"name": "temperature", "unit": "°C", "type": "float", "rate_hz": RATE_HZ},
            {"name": "humidity", "unit": "%RH", "type": "float", "rate_hz": RATE_HZ},
            {"name": "uptime", "unit": "s", "type": "int", "rate_hz": RATE_HZ},
        ],
        "commands": [
            {
                "op": "noop",
                "timeout_ms": 5000,
                "params_schema": {
                    "type": "object",
                    "properties": {"delay_ms": {"type": "integer", "minimum": 0, "maximum": 60000}},
                    "additionalProperties": False,
                },
            },
            {
                "op": "identify",
                "timeout_ms": 2000,
                "params_schema": {
                    "type": "object",
                    "properties": {"seconds": {"type": "integer", "minimum": 1, "maximum": 60}},
                    "additionalProperties": False,
                },
            },
        ],
    }


def read_sensors(seq):
    """(temperature, humidity) — replace with your hardware."""
    import math

    return 21 + 2 * math.sin(seq / 30), 45 + 5 * math.cos(seq / 50)


class Device:
    """One device: a connection per session, telemetry, and sequential command handling."""

    def __init__(self):
        self.booted = time.time()
        self.runs = 0  # noop commands carried out since boot
        self.done = {}  # command id -> final answer (bytes)
        self.done_order = []
        self.client = None
        self.session = None
        self.manifest = None
        self.seq = 0
        self.led = machine.Pin(2, machine.Pin.OUT)

    # --- connection -----------------------------------------------------------------------

    def connect(self):
        """New session; Last Will; manifest; subscriptions; then ``online``."""
        self.session = new_session()
        self.seq = 0
        self.manifest = json.dumps(manifest(self.session))
        client = MQTTClient(
            f"{config.VENDOR}-{config.DEVICE}",
            config.LAB_HOST,
            port=config.LAB_PORT,
            user=config.LAB_USER,
            password=config.LAB_PASSWORD,
            keepalive=KEEPALIVE_S,
            ssl=config.LAB_SSL,
        )
        will = json.dumps({"state": "lost", "session": self.session})
        client.set_last_will(ROOT + "/state", will, retain=True, qos=1)
        client.set_callback(self.on_message)
        client.connect(clean_session=True)
        self.client = client
        self.publish("/manifest", self.manifest, retain=True)
        client.subscribe(ROOT + "/cmd/+/req", qos=1)
        client.subscribe("lab/v1/_ctl/+/state", qos=1)
        client.subscribe(f"lab/v1/_err/{config.VENDOR}/{config.DEVICE}", qos=1)
        self.publish("/state", self.state("online"), retain=True)
        print("online, session", self.session)

    def stop(self):
        """A clean stop: ``offline``, then DISCONNECT (the broker drops the will)."""
        if self.client is not None:
            self.publish("/state", self.state("offline"), retain=True)
            self.client.disconnect()
            self.client = None
            print("offline")

    def publish(self, suffix, payload, retain=False):
        """QoS 1: returns once the broker acknowledged it."""
        self.client.publish(ROOT + suffix, payload, retain=retain, qos=1)

    def state(self, state):
        """A presence payload of the current session."""
        return json.dumps({"state": state, "session": self.session, "ts": now()})

    # --- telemetry ------------------------------------------------------------------------

    def sample(self):
        """Publish one sample of every channel; seq goes up by 1 per sample."""
        temperature, humidity = read_sensors(self.seq)
        payload = {
            "session": self.session,
            "seq": self.seq,
            "ts": now(),
            "v": {
                "temperature": round(temperature, 2),
                "humidity": round(humidity, 1),
                "uptime": int(time.time() - self.booted),
            },
        }
        self.seq += 1
        self.publish("/telemetry/" + STREAM, json.dumps(payload))

    # --- inbound --------------------------------------------------------------------------

    def on_message(self, topic, msg):
        """Commands, controller presence and the lab's explanations."""
        topic = topic.decode()
        if topic.startswith(ROOT + "/cmd/") and topic.endswith("/req"):
            self.on_request(topic.split("/")[-2], msg)
        elif topic.startswith("lab/v1/_ctl/"):
            try:
                announced = json.loads(msg)
            except ValueError:
                return
            if isinstance(announced, dict) and announced.get("state") == "online":
                self.publish("/manifest", self.manifest, retain=True)
        elif topic.startswith("lab/v1/_err/"):
            print("the lab refused a message:", msg)

    def respond(self, cid, answer):
        """Send one answer on ``cmd/{id}/res``."""
        answer["id"] = cid
        self.publish(f"/cmd/{cid}/res", json.dumps(answer))

    def final(self, cid, answer):
        """Send the final answer and remember it for a repeated id."""
        answer["id"] = cid
        body = json.dumps(answer)
        self.done[cid] = body
        self.done_order.append(cid)
        while len(self.done_order) > REMEMBER:
            self.done.pop(self.done_order.pop(0), None)
        self.publish(f"/cmd/{cid}/res", body)

    def on_request(self, cid, msg):
        """Check, de-duplicate and carry out one command."""
        if cid in self.done:  # a repeated id: the same answer, not carried out again
            self.publish(f"/cmd/{cid}/res", self.done[cid])
            return
        try:
            req = json.loads(msg)
            op, params, deadline = req["op"], req.get("params", {}), float(req["deadline"])
            if req["id"] != cid or not isinstance(params, dict):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            self.final(cid, refused("rejected", "bad_request", "needs id, op and deadline"))
            return
        if now() > deadline:
            self.final(cid, refused("rejected", "expired", "the deadline passed before start"))
            return
        handler = {"noop": self.do_noop, "identify": self.do_identify}.get(op)
        if handler is None:
            self.final(cid, refused("rejected", "unknown_op", "no operation " + op))
            return
        handler(cid, params)

    def do_noop(self, cid, params):
        """The conformance operation: accepted, wait delay_ms, succeeded {"runs": n}."""
        delay = params.get("delay_ms", 0)
        if not isinstance(delay, int) or isinstance(delay, bool) or not 0 <= delay <= 60000:
            self.final(cid, refused("rejected", "bad_params", "delay_ms must be 0..60000"))
            return
        self.respond(cid, {"status": "accepted"})
        self.runs += 1
        time.sleep_ms(delay)
        self.final(cid, {"status": "succeeded", "result": {"runs": self.runs}})

    def do_identify(self, cid, params):
        """Blink the on-board LED for ``seconds``."""
        seconds = params.get("seconds", 5)
        if not isinstance(seconds, int) or isinstance(seconds, bool) or not 1 <= seconds <= 60:
            self.final(cid, refused("rejected", "bad_params", "seconds must be 1..60"))
            return
        self.respond(cid, {"status": "accepted"})
        for _ in range(seconds * 2):
            self.led.value(not self.led.value())
            time.sleep_ms(250)
        self.led.value(0)
        self.final(cid, {"status": "succeeded", "result": {"seconds": seconds}})

    # --- main loop ------------------------------------------------------------------------

    def run_connected(self):
        """Telemetry at RATE_HZ, commands as they come, pings for the keepalive."""
        period_ms = int(1000 / RATE_HZ)
        next_sample = next_ping = time.ticks_ms()
        while True:
            self.client.check_msg()
            t = time.ticks_ms()
            if time.ticks_diff(t, next_sample) >= 0:
                self.sample()
                next_sample = time.ticks_add(next_sample, period_ms)
            if time.ticks_diff(t, next_ping) >= 0:
                self.client.ping()
                next_ping = time.ticks_add(t, KEEPALIVE_S * 1000 // 2)
            time.sleep_ms(10)


def refused(status, code, message):
    """A ``rejected`` or ``failed`` answer."""
    return {"status": status, "error": {"code": code, "message": message}}


def join_wifi():
    """Connect to the Wi-Fi and set the clock (NTP): deadlines and ts depend on it."""
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    if not wlan.isconnected():
        wlan.connect(config.WIFI_SSID, config.WIFI_PASSWORD)
        while not wlan.isconnected():
            time.sleep_ms(200)
    ntptime.settime()


def main():
    """Connect, run, reconnect with a new session after any network error."""
    join_wifi()
    device = Device()
    backoff = 1
    while True:
        try:
            device.connect()
            backoff = 1
            device.run_connected()
        except KeyboardInterrupt:
            device.stop()
            return
        except OSError as exc:
            print(f"connection ended ({exc}); reconnecting in {backoff} s with a new session")
            device.client = None
            time.sleep(backoff)
            backoff = min(backoff * 2, 30)


main()
