"""A run folder's files, read without trusting them and written so that a crash loses nothing.

- ``config.yml`` is read by :class:`ConfigLoader`, which builds only config dataclasses, the
  classes and functions they name, paths, tuples and enum values of nerfstudio, mzen and the
  nerfstudio plugins installed — never anything that runs code (PyYAML's full loader, which
  nerfstudio uses, will call any Python function a file names). Then :func:`check_config` holds
  every config to its dataclass: each ``_target`` a class of the kind that config builds (a loader
  calls it), a function only where the field's own default is that function, a nested config
  only of its field's kind, no field missing that a loader would read.
- Checkpoints are read with torch's safe loader; a damaged, empty or foreign file is reported by
  name, and the newest readable checkpoint of a folder is used, saying which were skipped.
- Checkpoints are written to a staging file and renamed into place, so a kill mid-save leaves the
  previous checkpoint and no partial one.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
import os
import pathlib
import re
import sys
import typing
from functools import lru_cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Dict, FrozenSet, List, Optional, Tuple

import torch
import yaml

from mzen_dataparsers.errors import FileError

CHECKPOINT_NAME = re.compile(r"^step-(\d+)\.ckpt$")
"""nerfstudio's checkpoint file names (``step-000001799.ckpt``)."""
PATH_TYPES = (
    pathlib.Path,
    pathlib.PosixPath,
    pathlib.WindowsPath,
    pathlib.PurePath,
    pathlib.PurePosixPath,
    pathlib.PureWindowsPath,
)
"""Path classes a config may construct (``!!python/object/apply:pathlib.PosixPath``)."""


class RunFileError(FileError):
    """A run's file cannot be used; the message names it."""

    kind = "mzen run file error"


# ------------------------------------------------------------------------------------ configs


@lru_cache(maxsize=1)
def trusted_packages() -> FrozenSet[str]:
    """Top-level packages whose config classes a run's ``config.yml`` may name: nerfstudio, mzen,
    torch (optimizer classes, dtypes) and every installed nerfstudio plugin."""
    packages = {"nerfstudio", "mzen_ns", "mzen_dataparsers", "torch"}
    for group in ("nerfstudio.method_configs", "nerfstudio.dataparser_configs"):
        packages.update(entry.value.split(":")[0].split(".")[0] for entry in entry_points(group=group))
    return frozenset(packages)


def _trusted(module: str) -> bool:
    return module.split(".")[0] in trusted_packages()


class ConfigLoader(yaml.SafeLoader):
    """YAML loader for run configs: safe YAML plus the Python tags nerfstudio's ``yaml.dump`` writes,
    each restricted to values that cannot run code."""

    def find_trusted_name(self, name: str, node: yaml.Node) -> Any:
        """The object ``module.name`` of a trusted package (its module imported if needed)."""
        module_name, _, attribute = name.rpartition(".")
        if not module_name or not _trusted(module_name) and not module_name.startswith("pathlib"):
            raise yaml.constructor.ConstructorError(
                None, None, f"{name!r} is not a config value this loader builds", node.start_mark
            )
        try:
            value = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as error:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot find {name!r} ({error})", node.start_mark
            ) from error
        return value

    def construct_config_name(self, suffix: str, node: yaml.Node) -> Any:
        """``!!python/name:X``: a class, enum member or dtype of a trusted package, or a function of
        nerfstudio, mzen or a plugin (a data loader's collate function)."""
        value = self.find_trusted_name(suffix, node)
        if isinstance(value, (type, enum.Enum, torch.dtype)):
            return value
        if inspect.isfunction(value) and not suffix.startswith("torch."):
            return value
        raise yaml.constructor.ConstructorError(None, None, f"{suffix!r} is not a config class", node.start_mark)

    def construct_dataclass(self, suffix: str, node: yaml.Node):
        """``!!python/object:X {...}``: a dataclass of a trusted package, its fields set without
        running its ``__init__``."""
        cls = self.find_trusted_name(suffix, node)
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)) or hasattr(cls, "__setstate__"):
            raise yaml.constructor.ConstructorError(
                None, None, f"{suffix!r} is not a config dataclass", node.start_mark
            )
        instance = cls.__new__(cls)
        yield instance
        state = self.construct_mapping(node, deep=True)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(key) for key in state if key not in names)
        if unknown:
            raise yaml.constructor.ConstructorError(
                None, None, f"{suffix} has no field(s) {', '.join(unknown)}", node.start_mark
            )
        instance.__dict__.update(state)

    def construct_call(self, suffix: str, node: yaml.Node) -> Any:
        """``!!python/object/apply:X [...]``: a path, an enum member looked up by value, or a generic
        class of a trusted package specialised with classes (``VanillaDataManager[DepthDataset]``,
        which PyYAML writes as ``_operator.getitem``)."""
        if not isinstance(node, yaml.SequenceNode):
            raise yaml.constructor.ConstructorError(
                None, None, f"{suffix!r}: only the short form is accepted", node.start_mark
            )
        if suffix == "_operator.getitem":
            return self.construct_generic(node)
        target = self.find_trusted_name(suffix, node)
        args = self.construct_sequence(node, deep=True)
        if target in PATH_TYPES and all(isinstance(arg, str) for arg in args):
            return target(*args)
        if isinstance(target, type) and issubclass(target, enum.Enum) and len(args) == 1:
            return target(args[0])
        raise yaml.constructor.ConstructorError(
            None, None, f"{suffix!r} may not be called by a config", node.start_mark
        )

    def construct_generic(self, node: yaml.SequenceNode) -> Any:
        """``Generic[parameters]`` where the generic class and every parameter are classes the loader
        accepted (each came through ``!!python/name``)."""
        args = self.construct_sequence(node, deep=True)
        if len(args) == 2:
            generic, parameters = args
            listed = parameters if isinstance(parameters, tuple) else (parameters,)
            if (
                isinstance(generic, type)
                and issubclass(generic, typing.Generic)  # type: ignore[arg-type]
                and all(isinstance(p, type) for p in listed)
            ):
                return generic[parameters]
        raise yaml.constructor.ConstructorError(
            None, None, "'_operator.getitem' is only accepted on a generic config class", node.start_mark
        )

    def construct_tuple_value(self, node: yaml.Node) -> Tuple[Any, ...]:
        """``!!python/tuple [...]``."""
        return tuple(self.construct_sequence(node, deep=True))


ConfigLoader.add_multi_constructor("tag:yaml.org,2002:python/name:", ConfigLoader.construct_config_name)
ConfigLoader.add_multi_constructor("tag:yaml.org,2002:python/object:", ConfigLoader.construct_dataclass)
ConfigLoader.add_multi_constructor("tag:yaml.org,2002:python/object/apply:", ConfigLoader.construct_call)
ConfigLoader.add_constructor("tag:yaml.org,2002:python/tuple", ConfigLoader.construct_tuple_value)


def parse_config(text: str, where: str) -> Any:
    """A run configuration from YAML ``text`` (``where`` names it in errors), checked by
    :func:`check_config`."""
    try:
        config = yaml.load(text, Loader=ConfigLoader)  # noqa: S506 - ConfigLoader is the restricted loader above
    except yaml.YAMLError as error:
        problem = str(getattr(error, "problem", None) or error).strip()
        raise RunFileError(where, f"not a run configuration mzen can load safely: {problem}") from None
    except (TypeError, ValueError, AttributeError) as error:
        raise RunFileError(where, f"not a run configuration mzen can load safely: {first_line(error)}") from None
    except RecursionError:
        raise RunFileError(where, "not a run configuration: nested too deeply") from None
    check_config(config, where)
    return config


def _field_default(field: dataclasses.Field) -> Any:
    """A field's default value (built by its factory), or ``dataclasses.MISSING``."""
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def target_kind(default: type) -> type:
    """What a config whose default ``_target`` is ``default`` may build: the most general class
    among ``default`` and its bases that its own top-level package defines (nerfacto's model config
    builds a nerfstudio ``Model``, an Adam config a torch ``Optimizer``, mzen's pipeline config an
    ``MZENPipeline``)."""
    package = default.__module__.split(".")[0]
    return [base for base in default.__mro__ if base.__module__.split(".")[0] == package][-1]


def _unspecialised(target: Any) -> Any:
    """A generic class specialised (``VanillaDataManager[DepthDataset]``) as its class; anything else as is."""
    return typing.get_origin(target) or target


def _builds(target: Any, kind: type) -> bool:
    """Whether ``target`` (a ``_target`` value) is a class of ``kind``."""
    target = _unspecialised(target)
    return isinstance(target, type) and issubclass(target, kind)


def _check_target(value: Any, default: Any, key: str, where: str) -> None:
    value, default = _unspecialised(value), _unspecialised(default)
    if not isinstance(default, type):
        if value is not default:
            raise RunFileError(where, f"{key}: {value!r} is not what this config builds ({default!r})")
        return
    kind = target_kind(default)
    if not _builds(value, kind):
        raise RunFileError(
            where, f"{key}: {_name(value)} is not a {kind.__module__}.{kind.__qualname__} class, refused"
        )


def _name(value: Any) -> str:
    module, name = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
    return f"{module}.{name}" if module and name else repr(value)


def _check_value(value: Any, default: Any, key: str, where: str) -> None:
    """A function or class outside ``_target`` is accepted only as the field's own default."""
    if isinstance(default, staticmethod):
        default = default.__func__
    if (
        inspect.isroutine(value) or isinstance(value, type) and not issubclass(value, enum.Enum)
    ) and value is not default:
        raise RunFileError(where, f"{key}: {_name(value)} is not this field's default ({_name(default)}), refused")


def _check_nested(value: Any, field: dataclasses.Field, key: str, where: str) -> None:
    """Where a field's default is a config, its value must be one of the same kind: one that builds
    a class of the kind the default builds (:func:`target_kind`), or, for a config that builds
    nothing, an instance of the default's class."""
    default = _field_default(field)
    if not dataclasses.is_dataclass(default) or isinstance(default, type):
        return
    builds = _unspecialised(getattr(default, "_target", None))
    if isinstance(builds, type):
        kind = target_kind(builds)
        if not (dataclasses.is_dataclass(value) and _builds(getattr(value, "_target", None), kind)):
            raise RunFileError(
                where, f"{key}: a {type(value).__name__} where a config building a {kind.__name__} belongs"
            )
    elif not isinstance(value, type(default)):
        raise RunFileError(where, f"{key}: a {type(value).__name__} where a {type(default).__name__} belongs")


def check_config(config: Any, where: str, key: str = "config") -> None:
    """Hold every dataclass in ``config`` to its class: a ``_target`` must be a class of the kind
    its default is (:func:`target_kind`), another field may hold a function or class only if it
    is the field's default, a config only where its default is a config of the same kind, and a
    field the class gives no class-level default for must be present (nerfstudio writes every
    field; one without a default would fail as soon as it is read).

    Raises:
        RunFileError: naming ``where``, the key path and the value at fault.
    """
    if isinstance(config, (list, tuple)):
        for index, item in enumerate(config):
            check_config(item, where, f"{key}[{index}]")
        return
    if isinstance(config, dict):
        for name, item in config.items():
            check_config(item, where, f"{key}.{name}")
        return
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        return
    for field in dataclasses.fields(config):
        path = f"{key}.{field.name}"
        if field.name not in vars(config):
            if field.default is dataclasses.MISSING:
                raise RunFileError(where, f"{path} is missing ({type(config).__name__} needs it)")
            continue
        value = vars(config)[field.name]
        if field.name == "_target":
            _check_target(value, _field_default(field), path, where)
        else:
            _check_value(value, field.default, path, where)
            check_config(value, where, path)
            _check_nested(value, field, path, where)


def load_config(path: Path) -> Any:
    """The trainer config of a run from its ``config.yml``, refusing anything that could run code.

    Raises:
        RunFileError: the file is missing or unreadable, or not a run configuration.
    """
    path = Path(path)
    if not path.is_file():
        raise RunFileError(path, "config file not found (pass the run's config.yml)")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise RunFileError(path, f"cannot read the config ({error})") from None
    config = parse_config(text, str(path))
    from nerfstudio.engine.trainer import TrainerConfig

    if not isinstance(config, TrainerConfig):
        raise RunFileError(path, f"not a nerfstudio run configuration (it holds a {type(config).__name__})")
    return config


# -------------------------------------------------------------------------------- checkpoints


def checkpoint_files(folder: Path) -> List[Tuple[int, Path]]:
    """(step, path) of the checkpoints in ``folder``, oldest first; other files are not checkpoints."""
    found = []
    for path in Path(folder).iterdir():
        match = CHECKPOINT_NAME.match(path.name)
        if match and path.is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def read_checkpoint(path: Path) -> Dict[str, Any]:
    """A checkpoint's contents, loaded with torch's safe (weights-only) loader.

    Raises:
        RunFileError: the file is empty, damaged, not a checkpoint, or holds anything but tensors
        and plain values.
    """
    path = Path(path)
    if not path.is_file():
        raise RunFileError(path, "checkpoint not found")
    if path.stat().st_size == 0:
        raise RunFileError(path, "checkpoint is empty (a save was interrupted?)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for damaged or foreign files
        raise RunFileError(path, f"damaged or not a checkpoint ({first_line(error)})") from None
    if not isinstance(state, dict) or not isinstance(state.get("pipeline"), dict) or "step" not in state:
        raise RunFileError(path, "not a nerfstudio checkpoint (no 'step' and 'pipeline')")
    return state


def first_line(error: BaseException) -> str:
    """What went wrong, in one line, without torch's advice to load the file unsafely."""
    text = str(error).strip()
    if "Weights only load failed" in text:
        unsupported = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        if unsupported:
            return f"it names Python code ({unsupported.group(1)}) that loading it would run; refused"
        return "not a torch checkpoint"
    line = text.splitlines()[0] if text else type(error).__name__
    return re.sub(r"\s*\(?weights_only.*$", "", line, flags=re.IGNORECASE) or type(error).__name__


def newest_readable_checkpoint(folder: Path, step: Optional[int] = None) -> Tuple[Path, Dict[str, Any], List[str]]:
    """The newest checkpoint of ``folder`` that reads (or the one of ``step``), its contents, and a
    line for each newer one skipped because it does not read.

    Raises:
        RunFileError: the folder is missing or holds no readable checkpoint (each one's fault named).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise RunFileError(folder, "checkpoint folder not found")
    if step is not None:
        path = folder / f"step-{step:09d}.ckpt"
        return path, read_checkpoint(path), []
    candidates = checkpoint_files(folder)
    if not candidates:
        raise RunFileError(folder, "no checkpoint (step-*.ckpt) in this folder")
    skipped: List[str] = []
    for _, path in reversed(candidates):
        try:
            return path, read_checkpoint(path), skipped
        except RunFileError as error:
            skipped.append(str(error))
    raise RunFileError(folder, "no readable checkpoint: " + "; ".join(skipped))


def load_pipeline_state(pipeline: Any, state: Dict[str, Any], path: Path) -> None:
    """Load a checkpoint's pipeline state; a checkpoint of another scene or model is named.

    Raises:
        RunFileError: the state does not fit ``pipeline``.
    """
    try:
        pipeline.load_pipeline(state["pipeline"], state["step"])
    except (RuntimeError, KeyError, ValueError) as error:
        raise RunFileError(path, f"does not fit this run's model ({first_line(error)})") from None


def commit_checkpoint(staged: Path, folder: Path, keep_only_latest: bool) -> Path:
    """Move a fully written checkpoint into ``folder`` in one rename (flushed to disk first), then
    delete the older ones if ``keep_only_latest``; the checkpoint's final path."""
    with open(staged, "rb") as handle:
        os.fsync(handle.fileno())
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / staged.name
    os.replace(staged, final)
    if keep_only_latest:
        for _, older in checkpoint_files(folder):
            if older != final:
                older.unlink()
    return final


def caller_config_path(depth: int = 2) -> Optional[str]:
    """The config file a caller up the stack is loading (a local ``config_path``, or a config's
    ``load_config``), to name it in errors raised through nerfstudio's own commands."""
    frame = sys._getframe(depth)
    for _ in range(4):
        if frame is None:
            break
        for value in frame.f_locals.values():
            if isinstance(value, pathlib.PurePath) and value.suffix in (".yml", ".yaml"):
                return str(value)
            candidate = getattr(value, "load_config", None)
            if isinstance(candidate, pathlib.PurePath):
                return str(candidate)
        frame = frame.f_back
    return None
