"""The benchmarks' figures get pasted into docs and committed, so what they print must not carry
this machine's layout."""

import pytest

from bench import bench_models, default_model_folder


def test_bench_names_the_shipped_model_without_its_absolute_path() -> None:
    folder = default_model_folder()
    if folder is None:
        pytest.skip("no shipped model in the registry")
    shipped = [model for model in bench_models(quick=True) if model.name == "default"]
    assert len(shipped) == 1
    assert str(folder.parent) not in shipped[0].note and repr(folder.name) in shipped[0].note
