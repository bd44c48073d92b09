"""Face-detector rate: the fraction of images in which OpenCV's bundled Haar cascade finds a face."""

from __future__ import annotations

import cv2
import numpy as np

CASCADE = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"


def face_rate(images: np.ndarray, size: int = 128) -> float:
    """Images (N, H, W, 3) uint8 are upscaled to `size` px with bicubic interpolation, then detected."""
    det = cv2.CascadeClassifier(CASCADE)
    if det.empty():
        raise RuntimeError(f"could not load {CASCADE} (opencv-python-headless<5 ships it)")
    hits = 0
    for im in images:
        g = cv2.cvtColor(cv2.resize(im, (size, size), interpolation=cv2.INTER_CUBIC), cv2.COLOR_RGB2GRAY)
        faces = det.detectMultiScale(g, scaleFactor=1.1, minNeighbors=3, minSize=(size // 4, size // 4))
        hits += len(faces) > 0
    return hits / len(images)
