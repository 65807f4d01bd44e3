"""The main job (`python -m training`, config `digits`) reaches its target:
>= 97% test accuracy on scikit-learn's digits. The full default config runs
in-process (seed 0, 40 epochs, no few-shot evaluation), then exports and
verifies SavedModel, TFLite fp32/fp16/dynamic-range int8 and ONNX: about 2-3
minutes on a 2-core CPU."""

from training import config as configs
from training import train


def test_main_job_reaches_97_percent(tmp_path):
    config = configs.load_config("digits", ["fewshot=[]", "verbose=0"])
    config["output"] = str(tmp_path / "run")
    results = train.run(config)
    assert results["test_accuracy"] >= 0.97, results
    files = [row["file"] for row in results["export"]["files"]]  # each one loaded back and checked
    assert len(files) == 5 and "model.onnx" in files, files
