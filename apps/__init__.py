"""edgekit.apps: demos that run exported models through edgekit.runtime + OpenCV, never torch.

``webcam`` classifies camera / video / folder frames live; ``kiosk`` detects faces, estimates age /
gender / emotion per face and counts visitors. CLI: ``edgekit demo webcam|kiosk``.
"""
