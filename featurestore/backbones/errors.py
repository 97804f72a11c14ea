"""Errors about backbones and their weights; each message is one line naming the value or file."""

from __future__ import annotations

from featurestore.errors import FeatureStoreError, InvalidName


class UnknownBackbone(InvalidName):
    """A backbone name that is not in the registry."""


class UnknownLayer(InvalidName):
    """A feature layer the backbone does not offer."""


class WeightsUnavailable(FeatureStoreError):
    """The weights are neither on disk nor downloadable right now."""


class WeightsCorrupt(FeatureStoreError):
    """The weights file cannot be read, or its checksum is not the published one."""


class WeightsMismatch(FeatureStoreError):
    """The weights file holds weights of another architecture."""
