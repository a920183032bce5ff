"""Resynthesis of device-rate waveforms from real per-epoch records (DESIGN §3, point 2).

The generators carry only what the real records hold: each epoch's EEG/EOG band powers
(Sleep-EDF), each epoch's heart rate and activity (Walch), real beat-to-beat intervals and 1-s
activity (MMASH). Everything else (waveform morphology, respiration, temperatures, EMG) is
generic physiology. No generator function takes a stage label: labels travel beside the
signals, untouched, so accuracy measured on these signals is about the real information only.
"""

from firmware_sim.resynth.data import data_root
from firmware_sim.resynth.nights import SynthNight, mmash_day, sleep_edf_night, walch_night

__all__ = ["SynthNight", "data_root", "mmash_day", "sleep_edf_night", "walch_night"]
