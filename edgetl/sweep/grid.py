"""The grid a sweep runs: the three lists of the command line, or a YAML/TOML file for uneven grids."""

from __future__ import annotations

from itertools import product
from pathlib import Path

from edgetl.features.backbones import ALPHAS, BackboneSpec


def grid(backbones: list[str], alphas: list[float], resolutions: list[int]) -> tuple[list[BackboneSpec], list[str]]:
    """Every valid (backbone, alpha, resolution); combinations a family lacks are returned as notes."""
    points, notes = [], []
    for version, alpha, resolution in product(backbones, alphas, resolutions):
        if version not in ALPHAS:
            raise ValueError(f"unknown backbone {version!r}; expected one of {sorted(ALPHAS)}")
        if float(alpha) not in ALPHAS[version]:
            note = f"MobileNet {version} has no alpha {alpha:g} (it has {', '.join(f'{a:g}' for a in ALPHAS[version])})"
            if note not in notes:
                notes.append(note)
            continue
        points.append(BackboneSpec(version, float(alpha), int(resolution)))
    return points, notes


def read_grid_file(path: Path) -> tuple[list[BackboneSpec], list[str]]:
    """A YAML or TOML grid: `points: [{backbone, alpha, resolution}, ...]` and/or the three lists."""
    text = Path(path).read_text()
    if Path(path).suffix.lower() == ".toml":
        import tomllib

        spec = tomllib.loads(text)
    else:
        import yaml

        spec = yaml.safe_load(text) or {}
    points, notes = [], []
    if any(k in spec for k in ("backbones", "alphas", "resolutions")):
        missing = [k for k in ("backbones", "alphas", "resolutions") if k not in spec]
        if missing:
            raise ValueError(f"{path}: a grid needs backbones, alphas and resolutions; missing {', '.join(missing)}")
        points, notes = grid(spec["backbones"], spec["alphas"], spec["resolutions"])
    for p in spec.get("points", []):
        try:
            points.append(BackboneSpec(p["backbone"], float(p["alpha"]), int(p["resolution"])))
        except (KeyError, ValueError) as e:
            notes.append(f"{path}: skipping point {p}: {e}")
    if not points:
        raise ValueError(f"{path}: the grid has no valid points")
    return list(dict.fromkeys(points)), notes
