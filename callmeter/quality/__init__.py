"""Call quality: the ITU-T G.107 E-model (emodel.py) and mergeable histograms (histogram.py)."""
