"""Saving a fitted :class:`~bayes_sd.model.LatencyModel` to one netCDF file and loading it back: the
posterior, the training runs (group ``fit_data``) and models table (``fit_models``), and the
configuration, checked by an id on load. A mixin of ``LatencyModel``: it reads ``idata``, ``runs``,
``models``, ``config``, ``id``, ``model_type``, ``version`` and ``_prepare`` of the model."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Self

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from bayes_sd import __version__
from bayes_sd._io import atomic_write
from bayes_sd.traces.validate import validate_models, validate_runs

__all__ = ["DifferentModelError", "SavedPosterior"]


class DifferentModelError(ValueError):
    """A saved posterior does not match the model that tries to load it."""


class SavedPosterior:
    """Save and load methods of :class:`~bayes_sd.model.LatencyModel`."""

    def _data_groups(self) -> dict[str, xr.Dataset]:
        """The training runs (and models table) as groups stored with the posterior."""
        groups = {"fit_data": _runs_to_dataset(self.runs)}
        if self.models is not None:
            groups["fit_models"] = _runs_to_dataset(self.models).rename({"fit_run": "fit_model"})
        return groups

    def _attrs(self) -> dict:
        return {
            "model_type": self.model_type,
            "model_version": self.version,
            "id": self.id,
            "config": json.dumps(self.config),
            "bayes_sd_version": __version__,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }

    def save(self, path: str | Path) -> Path:
        """Write posterior, training runs and configuration to one netCDF file, atomically.

        Parameters
        ----------
        path : str or pathlib.Path
            The netCDF file to write (replaced if it exists).

        Returns
        -------
        pathlib.Path
            ``path``.

        Raises
        ------
        ValueError
            When the model is not fitted.

        Examples
        --------
        >>> model.save("posterior.nc")  # doctest: +SKIP
        """
        self._require_fit()
        path = Path(path)
        with atomic_write(path) as tmp:
            self.idata.to_netcdf(tmp, engine="h5netcdf")
        return path

    @classmethod
    def load(cls, path: str | Path, check: bool = True) -> Self:
        """Load a model saved by :meth:`save`, rebuilding it from the stored runs and config.

        Parameters
        ----------
        path : str or pathlib.Path
            A netCDF file written by :meth:`save` (``bayes-sd fit --out``).
        check : bool, default True
            Check that the saved model id and version match the rebuilt model, and that the stored runs
            rebuild the posterior's levels.

        Returns
        -------
        LatencyModel
            The fitted model.

        Raises
        ------
        FileNotFoundError
            When ``path`` is not a file.
        ValueError
            When ``path`` is not a readable netCDF file.
        DifferentModelError
            When the file is not a bayes_sd LatencyModel posterior, has no ``fit_data`` group, or (with
            ``check``) its id, version or levels differ from the rebuilt model's.

        Examples
        --------
        >>> model = LatencyModel.load("posterior.nc")  # doctest: +SKIP
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such posterior file. Fix: run `bayes-sd fit ... --out {path}`")
        try:
            idata = az.from_netcdf(path, engine="h5netcdf")
        except Exception as exc:  # noqa: BLE001 - any reader failure means the same thing to the user
            raise ValueError(f"{path}: not a readable netCDF posterior ({type(exc).__name__}). "
                             "Fix: pass a file written by `bayes-sd fit`") from exc
        attrs = idata.attrs
        if attrs.get("model_type") != cls.model_type or "config" not in attrs:
            raise DifferentModelError(f"{path}: not a bayes_sd LatencyModel posterior. "
                                      "Fix: pass a file written by `bayes-sd fit`")
        model = cls(json.loads(attrs["config"]))
        if check and (attrs.get("id") != model.id or attrs.get("model_version") != cls.version):
            raise DifferentModelError(
                f"{path}: saved model id {attrs.get('id')} (version {attrs.get('model_version')}) does not match "
                f"the rebuilt one {model.id} (version {cls.version}). Fix: refit with this bayes_sd version")
        if "fit_data" not in idata.groups():
            raise DifferentModelError(f"{path}: has no fit_data group (training runs). Fix: refit and save again")
        model.runs = validate_runs(_dataset_to_runs(idata.fit_data), f"{path} fit_data")
        if "fit_models" in idata.groups():
            models = _dataset_to_runs(idata.fit_models)
            model.models = validate_models(models.astype({c: float for c in models if c != "name"}),
                                           f"{path} fit_models")
        model.fit_data = model._prepare(model.runs, model.models)
        if check:
            for dim, levels in model.fit_data.coords.items():
                if dim in idata.posterior.coords and list(idata.posterior.coords[dim].values) != list(levels):
                    raise DifferentModelError(f"{path}: the stored runs rebuild different '{dim}' levels than "
                                              "the posterior's. Fix: refit and save again")
        model.idata = idata
        model.sampler_settings = json.loads(attrs.get("sampler", "{}"))
        return model


def _runs_to_dataset(runs: pd.DataFrame) -> xr.Dataset:
    """A run table as an ``xr.Dataset`` on dim ``fit_run`` (strings as str, numbers as float)."""
    data = {}
    for col in runs.columns:
        s = runs[col]
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s):
            data[col] = ("fit_run", s.astype(object).where(s.notna(), "").astype(str).to_numpy(dtype=object))
        else:
            data[col] = ("fit_run", s.astype(float).to_numpy())
    return xr.Dataset(data)


def _dataset_to_runs(ds: xr.Dataset) -> pd.DataFrame:
    df = pd.DataFrame({name: ds[name].values for name in ds.data_vars})
    for col in df.columns:
        if df[col].dtype == object:
            df[col] = df[col].replace("", np.nan)
    if "saturated" in df:
        df["saturated"] = df["saturated"].map({"True": True, "False": False})
    return df
