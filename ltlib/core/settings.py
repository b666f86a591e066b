"""A method's settings block: the run-config fields one method owns, declared, checked and hashed in its own file.

A block is a frozen dataclass whose fields are fields of the run config (:class:`ltlib.runs.config.RunConfig` is
made of the blocks, plus the common fields: data, model, schedule, seed, precision, execution). Its class methods
read the whole run config:

* :meth:`Settings.check_block` raises a :class:`~ltlib.core.errors.ConfigError` for an impossible value;
* :meth:`Settings.used` says whether the run uses the method; :meth:`Settings.hashed_fields` names the block's
  fields that change this run's result (by default: all of them when the method is used, none otherwise). Only those
  count toward the run's hash, so a run that does not use a method keeps the hash (and the cached folder) it had
  before.

The method's registry entry names its block (``settings=...``), so that the run setup finds a method's options
without a per-method table.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    """Base of a method's settings block (no fields of its own)."""

    @classmethod
    def block_fields(cls) -> tuple[str, ...]:
        """The run-config fields this block declares."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def check_block(cls, config) -> None:
        """Raise ConfigError when ``config``'s values of this block are impossible (nothing to check by default)."""

    @classmethod
    def used(cls, config) -> bool:
        """Whether ``config``'s run uses this method (always, by default)."""
        return True

    @classmethod
    def hashed_fields(cls, config) -> tuple[str, ...]:
        """The block's fields that change ``config``'s result: all of them where the run uses the method."""
        return cls.block_fields() if cls.used(config) else ()
