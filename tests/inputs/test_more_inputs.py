"""Values and settings that were accepted although wrong (issue 21): non-finite or out-of-range
parameters, datasets too small to train on, a plugin named like a built-in, a misspelt
COBENCH_LOAD_PLUGINS; and ``--dry-run --json`` prints JSON. Nothing here trains."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import cli_run

TINY = ["run", "--methods", "fgsm", "--eps", "8", "--epochs", "1", "--evaluators", "clean", "--results-dir", "r"]


def npz(path, n_train: int = 6, classes: int = 2, side: int = 8) -> str:
    rng = np.random.default_rng(0)
    np.savez(
        path,
        x_train=rng.random((n_train, side, side, 1)).astype("float32"),
        y_train=np.arange(n_train) % classes,
        x_test=rng.random((4, side, side, 1)).astype("float32"),
        y_test=np.arange(4) % classes,
    )
    return f"npz:{path}"


#: (extra arguments, with {dir} the test's folder; exit status; words of the message)
CASES = [
    (["--param", "methods.fgsm.alpha=inf"], 2, ["methods.fgsm.alpha = inf: expected a finite number"]),
    (["--param", "methods.fgsm.alpha=-inf"], 2, ["methods.fgsm.alpha = -inf: expected a finite number"]),
    (["--param", "datasets.digits.size=1"], 2, ["datasets.digits.size = 1: expected >= 4"]),
    (
        ["--param", "datasets.digits.test_fraction=0.9999"],
        2,
        ["datasets.digits.test_fraction = 0.9999", "leaves 0 training"],
    ),
    (
        ["--datasets", "imagefolder:{dir}/nowhere", "--param", "datasets.imagefolder.crop_padding=-3"],
        2,
        ["datasets.imagefolder.crop_padding = -3: expected >= -1"],
    ),
    # the dataset errors name the file or folder they read (issue 32)
    (["--datasets", "{one_class}"], 2, ["dataset 'npz' read from '{dir}/c.npz' has 1 class(es)", "at least 2"]),
    (
        ["--datasets", "{one_image}", "--param", "datasets.npz.num_classes=2"],
        2,
        ["dataset 'npz' read from '{dir}/i.npz' has 1 training image(s)"],
    ),
    (["--datasets", "{two_pixels}"], 2, ["dataset 'npz' read from '{dir}/p.npz' has 2x2-pixel images", "at least 4x4"]),
    (
        ["--datasets", "imagefolder:{one_class_folder}"],
        2,
        ["dataset 'imagefolder' read from '{dir}/one' has 1 class(es)", "at least 2"],
    ),
    (
        ["--datasets", "imagefolder:{two_pixel_folder}"],
        2,
        ["dataset 'imagefolder' read from '{dir}/tiny' has 2x2-pixel images", "at least 4x4"],
    ),
]


def image_folder(root, classes: int = 1, side: int = 8) -> str:
    """``root/{train,test}/c{k}/{0,1}.png``: two grey images of ``side`` pixels per class and split."""
    from PIL import Image

    for split in ("train", "test"):
        for k in range(classes):
            folder = root / split / f"c{k}"
            folder.mkdir(parents=True)
            for i in range(2):
                Image.new("L", (side, side), color=40 * i + 10 * k).save(folder / f"{i}.png")
    return str(root)


@pytest.mark.parametrize("extra, status, words", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_value_is_refused_before_training(tmp_path, monkeypatch, extra, status, words):
    monkeypatch.chdir(tmp_path)
    places = {
        "dir": str(tmp_path),
        "one_class": npz(tmp_path / "c.npz", classes=1),
        "one_image": npz(tmp_path / "i.npz", n_train=1),
        "two_pixels": npz(tmp_path / "p.npz", side=2),
        "one_class_folder": image_folder(tmp_path / "one"),
        "two_pixel_folder": image_folder(tmp_path / "tiny", classes=2, side=2),
    }
    monkeypatch.setenv("COLUMNS", "400")  # the message whole on one line, however long tmp_path is
    out = cli_run([*TINY, *(a.format(**places) for a in extra)])
    assert out.exit_code == status, out.output
    assert all(w.format(**places) in out.output for w in words), out.output
    assert "Traceback" not in out.output
    assert not list(tmp_path.rglob("*.json")), "nothing may be trained"


def test_a_plugin_named_like_a_builtin_method_is_refused(tmp_path):
    out = cli_run(["plugins", "new", "fgsm", "--dir", str(tmp_path)])
    assert out.exit_code == 2 and "a method named 'fgsm' is already installed" in out.output, out.output
    assert "my-fgsm" in out.output and not list(tmp_path.iterdir())


@pytest.mark.parametrize("value", ["nonee", "off", "all"])
def test_a_misspelt_load_plugins_setting_is_named(monkeypatch, value):
    monkeypatch.setenv("COBENCH_LOAD_PLUGINS", value)
    out = cli_run(["run", "--dry-run"])
    assert out.exit_code == 2 and f"COBENCH_LOAD_PLUGINS={value!r} is not valid" in out.output, out.output


def test_dry_run_json_prints_the_plan_as_json(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = cli_run(["run", "--dry-run", "--json", "--methods", "fgsm,pgd", "--eps", "8"])
    assert out.exit_code == 0, out.output
    plan = json.loads(out.output)
    assert plan["total"] == 2 and plan["finished"] == 0
    assert [c["state"] for c in plan["cells"]] == ["todo", "todo"]
    assert {c["label"].split()[0] for c in plan["cells"]} == {"fgsm", "pgd"}
