"""edgekit.train: datasets and transforms, the model factory (students, teachers, heads), the
training loop and metrics. Imports torch, timm and open_clip."""
