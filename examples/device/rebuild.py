"""Rebuild a model folder from a checkpoint that came back from the GPU machine, and check it.

Why: the device tool returns at most 64 MiB, and the checkpoint (weights + Adam state, 55 MB)
already holds every weight of the model folder (18 MB), so only the checkpoint and the small
files travel back (examples/device/train.sh). The rebuilt weights must hash to what the GPU
run's manifest recorded, or nothing is written over the model.

    cat back/state.safetensors.part-* > back/state.safetensors && tar -xf back/meta.tar -C back
    python examples/device/rebuild.py back models/default
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from musictranslate.config import ModelConfig  # noqa: E402
from musictranslate.model import ConfusionNet, Decoder, Encoder  # noqa: E402
from musictranslate.registry import save_model  # noqa: E402


def rebuild(back: Path, out: Path, data: str) -> None:
    manifest = json.loads((back / "default" / "manifest.json").read_text())
    # the run's data path is the GPU machine's scratch folder, which means nothing to a reader
    manifest["training"]["data"] = data
    state = load_file(back / "state.safetensors")
    config = ModelConfig.from_dict(manifest["architecture"])

    def weights(prefix: str) -> dict:
        return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}

    encoder, domains = Encoder(config), list(manifest["decoders"])
    encoder.load_state_dict(weights("model.encoder."))
    confusion = ConfusionNet(config, len(domains))
    confusion.load_state_dict(weights("confusion."))
    decoders = {d: Decoder(config) for d in domains}
    for domain, decoder in decoders.items():
        decoder.load_state_dict(weights(f"model.decoders.{domain}."))
    with tempfile.TemporaryDirectory() as staging:
        rebuilt = save_model(
            Path(staging) / out.name, config, encoder, confusion, decoders, manifest["training"]
        )
        mine = json.loads((rebuilt / "manifest.json").read_text())
        parts = [
            ("encoder", mine["encoder"], manifest["encoder"]),
            ("confusion", mine["confusion"], manifest["confusion"]),
        ]
        parts += [(d, mine["decoders"][d], manifest["decoders"][d]) for d in domains]
        for name, ours, theirs in parts:
            if ours["sha256"] != theirs["sha256"]:
                raise SystemExit(f"{name}: rebuilt weights differ from the GPU run's; nothing written")
    # the same save into the real folder keeps what it carries over (the domain classifier)
    save_model(out, config, encoder, confusion, decoders, manifest["training"], replace=True)
    run = out.with_name(out.name + ".train")
    (run / "checkpoint").mkdir(parents=True, exist_ok=True)
    shutil.copy(back / "state.safetensors", run / "checkpoint" / "state.safetensors")
    shutil.copy(back / "default.train" / "checkpoint" / "state.json", run / "checkpoint" / "state.json")
    for name in ("log.jsonl", "split.json"):
        shutil.copy(back / "default.train" / name, run / name)
    print(f"rebuilt {out} and its resume state from {back}; hashes match the GPU run's manifest")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("back", type=Path, help="folder with state.safetensors and meta.tar unpacked")
    parser.add_argument("out", type=Path, help="model folder to write, e.g. models/default")
    parser.add_argument(
        "--data",
        default="data/train, as the ~32 kbps Opus subset of examples/device/subset.py",
        help="what the GPU run trained on, for the model card",
    )
    args = parser.parse_args()
    rebuild(args.back, args.out, args.data)
