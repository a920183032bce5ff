"""Device descriptors: data files (TOML) naming a device's streams, rates, units and the feature
spec of each model it feeds. ``load_device`` validates on load and fails with a clear message."""

from edge.devices.profile import (
    DeviceError,
    DeviceProfile,
    EpochInputSpec,
    FrameInputSpec,
    StreamSpec,
    available_devices,
    load_device,
)

__all__ = [
    "DeviceError",
    "DeviceProfile",
    "EpochInputSpec",
    "FrameInputSpec",
    "StreamSpec",
    "available_devices",
    "load_device",
]
