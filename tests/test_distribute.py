import subprocess
import sys
import textwrap

# Logical devices must be set before TensorFlow starts, so this runs in a
# fresh interpreter.
SCRIPT = textwrap.dedent("""
    import numpy as np, tensorflow as tf, keras
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras_vit
    from helpers import TINY, random_images

    def train(strategy):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = keras_vit.ViT(**TINY)
            model.compile(optimizer=keras.optimizers.SGD(0.1),
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        images, labels = random_images(batch=16), np.arange(16) % 7
        history = model.fit(images, labels, batch_size=8, epochs=3, shuffle=False, verbose=0)
        return history.history["loss"], model.predict(images, verbose=0)

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert mirrored.num_replicas_in_sync == 2
    loss_2, out_2 = train(mirrored)
    loss_1, out_1 = train(tf.distribute.get_strategy())
    np.testing.assert_allclose(loss_2, loss_1, rtol=1e-4)
    np.testing.assert_allclose(out_2, out_1, atol=1e-4)
    print("losses", loss_2, loss_1)
""")


def test_mirrored_strategy_matches_one_device():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600,
        cwd=__file__.rsplit("/", 1)[0],
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "losses" in result.stdout
