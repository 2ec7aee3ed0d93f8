"""A Keras model's forward pass as TensorFlow functions: frozen for conversion, traced once for prediction."""

from __future__ import annotations

import numpy as np


def frozen_function(keras_model, batch_size: int | None):
    """The model's inference function with weights as constants; its input's batch dimension fixed at
    `batch_size`, or open (None) as in a SavedModel signature."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    spec = tf.TensorSpec((batch_size, *tuple(keras_model.inputs[0].shape)[1:]), tf.float32)
    function = tf.function(lambda x: keras_model(x, training=False)).get_concrete_function(spec)
    return convert_variables_to_constants_v2(function)


def traced_forward(keras_model):
    """The model's inference function traced once with the batch dimension open: numpy in, numpy (a list
    for several outputs) out. `predict_on_batch` traces again for each new batch size, so a last, shorter
    batch cost a whole trace."""
    import tensorflow as tf

    spec = tf.TensorSpec((None, *tuple(keras_model.inputs[0].shape)[1:]), tf.float32)
    function = tf.function(lambda x: keras_model(x, training=False), input_signature=[spec])

    def forward(batch: np.ndarray):
        out = function(np.asarray(batch, np.float32))
        return [np.asarray(o) for o in out] if isinstance(out, (list, tuple)) else np.asarray(out)

    return forward
