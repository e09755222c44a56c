"""The seed blog's hand-run pipeline, the baseline of bench/: a fresh Python process that loads
a .keras model, exports it with orbax-export (JaxModule + ExportManager) and converts it with
TFLiteConverter — no verification, no report. Prints one JSON line of stage times.

usage: python bench/handrun.py MODEL.keras OUT_DIR
"""

import json
import os
import sys
import time

t_start = time.perf_counter()
os.environ["KERAS_BACKEND"] = "jax"

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from orbax.export import ExportManager, JaxModule, ServingConfig  # noqa: E402

t_import = time.perf_counter()
model = keras.saving.load_model(sys.argv[1], compile=False)
params = {"t": [v.value for v in model.trainable_variables],
          "n": [v.value for v in model.non_trainable_variables]}


def serve(params, x):
    y, _ = model.stateless_call(params["t"], params["n"], x, training=False)
    return y


shape = tuple(model.inputs[0].shape[1:])
module = JaxModule(params, serve, input_polymorphic_shape="(b, " + ", ".join(map(str, shape)) + ")")
t_load = time.perf_counter()
out = sys.argv[2]
ExportManager(module, [ServingConfig("serving_default", input_signature=[
    tf.TensorSpec((None, *shape), tf.float32, name="x")])]).save(out + "/savedmodel")
t_saved = time.perf_counter()
converter = tf.lite.TFLiteConverter.from_saved_model(out + "/savedmodel",
                                                     signature_keys=["serving_default"])
with open(out + "/model.tflite", "wb") as f:
    f.write(converter.convert())
t_tflite = time.perf_counter()
print(json.dumps({"import": t_import - t_start, "load": t_load - t_import,
                  "savedmodel": t_saved - t_load, "tflite": t_tflite - t_saved,
                  "total": t_tflite - t_start}))
