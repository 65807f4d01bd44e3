"""The main job's test accuracy over seeds and both oneDNN settings, one CPU.

    python benchmarks/main_job_spread.py [--seeds 0-9] [--onednn both] [--set key=value ...]

Runs `python -m keras_vit.training` (config `digits`, no export, no few-shot)
once per seed with oneDNN on and once with it off (`TF_ENABLE_ONEDNN_OPTS=0`,
a stand-in for another CPU's rounding), each in a fresh process, and prints
every run and min / median / max per setting, with the CPU's name. `--set`
passes overrides to every run, to try another recipe. About 20 runs of
1.5-5 minutes on a 2-core CPU.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # common imports TensorFlow

from common import cpu_name  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def seed_range(text):
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def one_run(seed, onednn, overrides, folder):
    """The results.json of one run."""
    output = os.path.join(folder, f"seed{seed}_onednn{onednn}")
    command = [sys.executable, "-m", "keras_vit.training", "--seed", str(seed), "--output", output]
    for item in ["export=null", "fewshot=[]", *overrides]:
        command += ["--set", item]
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=str(onednn), PYTHONPATH=ROOT)
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"seed {seed}, oneDNN {onednn} failed:\n{done.stderr[-2000:]}")
    with open(os.path.join(output, "results.json")) as f:
        return json.load(f)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--seeds", type=seed_range, default=seed_range("0-9"), help="e.g. 0-9 (default)")
    parser.add_argument("--onednn", choices=("both", "on", "off"), default="both", help="(default: both)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}; overrides: {args.set or 'none'}", flush=True)
    settings = {"both": (1, 0), "on": (1,), "off": (0,)}[args.onednn]
    accuracies = {onednn: [] for onednn in settings}
    with tempfile.TemporaryDirectory() as folder:
        for seed in args.seeds:
            for onednn in settings:
                r = one_run(seed, onednn, args.set, folder)
                accuracies[onednn].append(r["test_accuracy"])
                print(
                    f"seed {seed} oneDNN {'on ' if onednn else 'off'}  test {r['test_accuracy']:.4f}  "
                    f"train {r['train_seconds']:.0f} s  {r['images_per_second']:.0f} images/s",
                    flush=True,
                )
    for onednn, values in accuracies.items():
        print(
            f"oneDNN {'on ' if onednn else 'off'}: min {min(values):.4f}  "
            f"median {statistics.median(values):.4f}  max {max(values):.4f}  ({len(values)} seeds)"
        )


if __name__ == "__main__":
    main()
