"""Entry point object for ``nerfstudio.dataparser_configs`` (kept tiny: loaded by ``ns-train --help``)."""

from nerfstudio.plugins.registry_dataparser import DataParserSpecification

from .ffmzn_dataparser import FFMZNDataParserConfig

ffmzn_dataparser = DataParserSpecification(
    config=FFMZNDataParserConfig(),
    description="FF-MZN multi-zoom scenes (transforms.json with per-frame zoom, or 1x/ 4x/ ... folders)",
)
