"""``lus predict``: score new videos with an exported model package (see lus/export/bundle.py).

``stream`` decodes and preprocesses a video in bounded chunks, ``annotate`` draws the frame score,
crop boxes and segmentation overlays, ``writers`` writes videos and the frame CSV, ``run`` ties them
together per video.
"""
