"""Stage 3: the MobileNet backbones, their bottleneck features and the bottleneck cache.

TensorFlow is imported inside functions only, so importing a module here stays cheap.
"""
