"""Pure tensor and array maths: no Lightning, no files, no medlight import but ``errors`` and ``keys``.

``kspace`` (centred FFTs, coil combination, masks, data consistency), ``instances`` (instance targets,
watershed), ``ema`` (teacher update), ``inference`` (sliding window, mirroring, post-processing),
``normalisation`` (intensity z-score).
"""
