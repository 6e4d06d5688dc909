"""Typed configuration: defaults < YAML file < `--set key=value` < named CLI options, validated once.

Every section is a dataclass (sections.py) whose fields declare their default and help once (fields.py);
`Config.from_dict` checks each key and value and raises a one-line `ConfigError` that names the key;
loading.py resolves files and overrides. No torch here: `mlcls --help` must stay light.
"""

from mlcls.config.loading import (
    ABSOLUTE_PATH_KEYS,
    absolute_data_paths,
    check_remote_code_asked,
    commented_yaml,
    config_help,
    first_difference,
    load_config,
    read_yaml_mapping,
)
from mlcls.config.sections import (
    BUNDLED_ENCODER,
    DATA_PATH_KEYS,
    RUN_NAME_MAX_BYTES,
    TRACKERS,
    Config,
    DataConfig,
    LossConfig,
    ModelConfig,
    OutputConfig,
    ThresholdConfig,
    TrainConfig,
)

__all__ = ["ABSOLUTE_PATH_KEYS", "BUNDLED_ENCODER", "DATA_PATH_KEYS", "RUN_NAME_MAX_BYTES", "TRACKERS", "Config",
           "DataConfig", "LossConfig", "ModelConfig", "OutputConfig", "ThresholdConfig", "TrainConfig",
           "absolute_data_paths", "check_remote_code_asked", "commented_yaml", "config_help", "first_difference",
           "load_config", "read_yaml_mapping"]
