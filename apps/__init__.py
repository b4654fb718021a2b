"""edgekit.apps: the webcam classifier and retail-kiosk demos (edgekit.runtime + OpenCV, never
torch). Not built yet: no app ships in this version."""
