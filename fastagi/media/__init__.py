"""Media: 20 ms audio frames on one shared clock, WAV files, rooms that mix parties."""
