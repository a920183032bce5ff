"""Which channel of a recorded file feeds which stream of a device.

Three ways, later ones overriding earlier ones stream by stream:

- the descriptor's ``file_labels`` (the default: Sleep-EDF files play on ``psg`` as they are);
- a named montage preset (``--montage aasm``): per stream, candidate labels tried in order;
- explicit pairs (``--channels eeg_fpz_cz=C4-M1,eog=E1-M2``).

Labels are compared loosely: case, spaces, a leading ``EEG``/``EOG``/``EMG`` type word and the
reference naming (``A1``/``A2`` ≡ ``M1``/``M2``) are ignored, so ``C3-A2`` matches ``EEG C3-M2``.
An explicit label that matches no channel, or more than one, is one error listing the file's
labels. A stream no rule finds is absent: the model's reduced-input rule applies to it, as for a
sensor that is off; it is never filled with zeros here.
"""

from __future__ import annotations

import re

from edge.devices import DeviceProfile

# What each preset gives the PSG models (ULW-SleepNet was trained on Sleep-EDF: a fronto-central
# EEG, a parieto-occipital EEG, horizontal EOG, the 1 Hz chin-EMG envelope). Candidates are
# tried in order; the first the file has wins.
MONTAGES: dict[str, dict[str, dict[str, tuple[str, ...]]]] = {
    "psg": {
        "sleep-edf": {
            "eeg_fpz_cz": ("Fpz-Cz",),
            "eeg_pz_oz": ("Pz-Oz",),
            "eog": ("EOG horizontal",),
            "emg": ("EMG submental",),
        },
        "aasm": {
            "eeg_fpz_cz": (
                "F4-M1", "F3-M2", "F3-M1", "F4-M2", "Fpz-Cz",
                "C4-M1", "C3-M2", "C3-M1", "C4-M2", "Cz-M1", "Cz-M2",
            ),
            "eeg_pz_oz": ("O2-M1", "O1-M2", "O1-M1", "O2-M2", "Pz-Oz"),
            "eog": (
                "E1-M2", "E2-M1", "E1-M1", "E2-M2", "LOC-M2", "ROC-M1", "LOC", "ROC",
                "EOG1-M1", "EOG1-M2", "EOG L", "EOG horizontal",
            ),
            "emg": ("Chin EMG", "Chin1-Chin2", "Chin1-Chin3", "Chin", "EMG1", "EMG submental"),
        },
        "dreams": {  # the DREAMS databases' BrainnetTM layout (FP1-A1, O1-A1, EOG1-A1, EMG1)
            "eeg_fpz_cz": ("FP1-A1", "C3-A1", "CZ-A1"),
            "eeg_pz_oz": ("O1-A1",),
            "eog": ("EOG1-A1",),
            "emg": ("EMG1",),
        },
    },
}  # fmt: skip

_TYPE_WORD = re.compile(r"^(eeg|eog|emg)[\s_:]+")
_SEP = re.compile(r"[\s_:/]+")


def norm_label(label: str) -> str:
    """A label in the loose form used for matching (see the module docstring)."""
    s = label.strip().lower()
    s = _TYPE_WORD.sub("", s)
    s = _SEP.sub("-", s).strip("-")
    s = re.sub(r"(?<![a-z])a([12])(?![0-9])", r"m\1", s)  # A1/A2 mastoid naming = M1/M2
    return s


def montages_for(device: str) -> list[str]:
    return sorted(MONTAGES.get(device, {}))


def parse_channels(text: str) -> dict[str, str]:
    """``STREAM=LABEL[,STREAM=LABEL...]`` → {stream: label}; ValueError on a malformed pair."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        stream, eq, label = part.partition("=")
        if not eq or not stream.strip() or not label.strip():
            raise ValueError(
                f"--channels takes STREAM=LABEL pairs separated by commas, got {part!r}"
            )
        out[stream.strip()] = label.strip()
    if not out:
        raise ValueError("--channels needs at least one STREAM=LABEL pair")
    return out


def resolve_channels(
    labels: list[str],
    profile: DeviceProfile,
    where: str,
    channels: dict[str, str] | None = None,
    montage: str | None = None,
) -> dict[str, list[int]]:
    """{stream: [index of the file channel per axis]} for the streams found; ValueError (one
    line, listing the file's labels) for an unknown stream, montage or label, or an ambiguous
    one. Multi-axis streams take ``LABEL+LABEL+...`` in ``channels``."""
    listing = f"labels here: {', '.join(repr(x) for x in labels)}"
    by_norm: dict[str, list[int]] = {}
    for i, lab in enumerate(labels):
        by_norm.setdefault(norm_label(lab), []).append(i)

    def exact_or_loose(label: str) -> list[int]:
        exact = [i for i, lab in enumerate(labels) if lab.strip().lower() == label.strip().lower()]
        return exact or by_norm.get(norm_label(label), [])

    found: dict[str, list[int]] = {}
    for name, spec in profile.streams.items():  # the descriptor's own labels
        axes = []
        for i in range(spec.n_axes):
            hit = next(
                (exact_or_loose(c) for c in spec.labels_for_axis(i) if exact_or_loose(c)), []
            )
            if not hit:
                break
            axes.append(hit[0])
        if len(axes) == spec.n_axes:
            found[name] = axes
    if montage is not None:
        presets = MONTAGES.get(profile.name, {})
        if montage not in presets:
            raise ValueError(
                f"unknown montage {montage!r} for device {profile.name!r} "
                f"(known: {', '.join(sorted(presets)) or 'none'})"
            )
        for name, candidates in presets[montage].items():
            for c in candidates:
                hit = exact_or_loose(c)
                if len(hit) > 1:
                    raise ValueError(
                        f"{where}: montage {montage!r}: {c!r} matches several channels "
                        f"({', '.join(repr(labels[i]) for i in hit)}); name one with --channels"
                    )
                if hit:
                    found[name] = hit
                    break
    for name, label in (channels or {}).items():
        spec = profile.streams.get(name)
        if spec is None:
            raise ValueError(
                f"--channels: device {profile.name!r} has no stream {name!r} "
                f"(streams: {', '.join(profile.streams)})"
            )
        parts = label.split("+") if spec.n_axes > 1 else [label]
        if len(parts) != spec.n_axes:
            raise ValueError(
                f"--channels: stream {name!r} has {spec.n_axes} axes; give LABEL+LABEL... "
                f"({'+'.join(spec.axes)})"
            )
        axes = []
        for part in parts:
            hit = exact_or_loose(part)
            if not hit:
                raise ValueError(f"{where}: no channel {part!r} for {name!r} ({listing})")
            if len(hit) > 1:
                raise ValueError(f"{where}: channel {part!r} is ambiguous for {name!r} ({listing})")
            axes.append(hit[0])
        found[name] = axes
    if not found:
        raise ValueError(
            f"{where}: no channel matches a stream of device {profile.name!r}; name them with "
            f"--channels STREAM=LABEL or --montage "
            f"{'|'.join(montages_for(profile.name)) or 'NAME'} ({listing})"
        )
    return found
