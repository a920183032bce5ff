"""Frame sources for edge-run: each yields one wire frame (bytes) at a time.

- ``FrameList`` (``sim``, ``replay``): frames made in-process from a recording by the virtual
  device (with the simulator's faults for ``sim``); seekable, so a restart resumes at a frame.
- ``MqttSource``: frames from a gateway over MQTT (QoS 1, persistent session, reconnects).
- ``BleSource``: frames from a wearable over BLE through bleak (see ``edge.sources.ble``).
"""

from edge.sources.frames import FrameList

__all__ = ["FrameList"]
