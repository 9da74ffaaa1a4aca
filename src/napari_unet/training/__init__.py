"""Training a U-Net from images and instance masks (see :func:`iter_train`)."""
