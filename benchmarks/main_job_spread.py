"""The main job's test accuracy over seeds, oneDNN settings and backends, one CPU.

    python benchmarks/main_job_spread.py [--seeds 0-9] [--onednn both] [--jax] [--set key=value ...]

Runs `python -m keras_vit.training` (config `digits`, no export, no few-shot)
once per seed with oneDNN on and once with it off (`TF_ENABLE_ONEDNN_OPTS=0`,
a stand-in for another CPU's rounding), and with `--jax` once more on JAX
(`KERAS_BACKEND=jax`, TensorFlow and JAX in one environment), each in a fresh
process, one seed's runs after each other. Prints every run and min / median
/ max per setting, with the CPU's name; with `--jax`, also JAX's training
images/s over TensorFlow's (oneDNN on) per seed. `--set` passes overrides to
every run, to try another recipe. About 20 runs of 1.5-5 minutes on a 2-core CPU.
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


def one_run(seed, setting, overrides, folder):
    """The results.json of one run; `setting`: "on" or "off" (TensorFlow with oneDNN so), or "jax"."""
    output = os.path.join(folder, f"seed{seed}_{setting}")
    command = [sys.executable, "-m", "keras_vit.training", "--seed", str(seed), "--output", output]
    for item in ["export=null", "fewshot=[]", *overrides]:
        command += ["--set", item]
    env = dict(os.environ, PYTHONPATH=ROOT)
    if setting == "jax":
        env["KERAS_BACKEND"] = "jax"
    else:
        env.update(KERAS_BACKEND="tensorflow", TF_ENABLE_ONEDNN_OPTS=str(int(setting == "on")))
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"seed {seed}, {LABELS[setting]} failed:\n{done.stderr[-2000:]}")
    with open(os.path.join(output, "results.json")) as f:
        return json.load(f)


LABELS = {"on": "TF oneDNN on ", "off": "TF oneDNN off", "jax": "JAX          "}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--seeds", type=seed_range, default=seed_range("0-9"), help="e.g. 0-9 (default)")
    parser.add_argument("--onednn", choices=("both", "on", "off"), default="both", help="(default: both)")
    parser.add_argument("--jax", action="store_true", help="also on JAX (KERAS_BACKEND=jax)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}; overrides: {args.set or 'none'}", flush=True)
    settings = {"both": ["on", "off"], "on": ["on"], "off": ["off"]}[args.onednn] + ["jax"] * args.jax
    runs = {setting: [] for setting in settings}
    with tempfile.TemporaryDirectory() as folder:
        for seed in args.seeds:
            for setting in settings:
                r = one_run(seed, setting, args.set, folder)
                runs[setting].append(r)
                print(
                    f"seed {seed} {LABELS[setting]}  test {r['test_accuracy']:.4f}  "
                    f"train {r['train_seconds']:.0f} s  {r['images_per_second']:.0f} images/s",
                    flush=True,
                )
    for setting, results in runs.items():
        values = [r["test_accuracy"] for r in results]
        print(
            f"{LABELS[setting]}: min {min(values):.4f}  median {statistics.median(values):.4f}  "
            f"max {max(values):.4f}  ({len(values)} seeds)"
        )
    if args.jax and "on" in runs:
        ratios = [j["images_per_second"] / t["images_per_second"] for j, t in zip(runs["jax"], runs["on"])]
        print(
            f"JAX / TF (oneDNN on) training images/s: min {min(ratios):.2f}  "
            f"median {statistics.median(ratios):.2f}  max {max(ratios):.2f}  ({len(ratios)} seeds)"
        )


if __name__ == "__main__":
    main()
