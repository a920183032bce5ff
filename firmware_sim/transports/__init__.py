"""How a virtual device's frames leave it: MQTT (a gateway) or BLE (a GATT server on Bumble)."""
