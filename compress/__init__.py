"""edgekit.compress: distillation, MobileOne-style reparameterization, INT8 PTQ and QAT — model
transforms on top of edgekit.train."""
