"""Built-in synthetic lung-ultrasound generator (DATA.md section 1); entry point
:func:`lus.data.sources.synthetic.generate`.

Modules: ``geometry`` (probe grids), ``style`` (per-hospital look), ``texture`` (speckle),
``plan`` (per-video random decisions), ``findings`` + ``render`` (one frame and its mask),
``overlay`` (burned-in text), ``labels`` (annotators, video score), ``video`` (one clip, AVI
writer), ``dataset`` (hospital/patient/video structure). Contract tests: tests/test_synth.py.
"""
