"""``firmware-sim``: virtual ANNE and PSG devices (BLE and MQTT transports arrive with issue #3)."""

from __future__ import annotations

import argparse
import sys

from edge.devices import available_devices


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="firmware-sim", description=__doc__)
    p.add_argument("--device", default="anne", choices=available_devices())
    p.add_argument("--transport", choices=["ble", "mqtt"], default="ble")
    args = p.parse_args(argv)
    print(
        f"firmware-sim: the {args.transport.upper()} transport for virtual '{args.device}' devices "
        "is not yet available (simulator issue #3)",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
