"""The config layer: the run's :class:`Config` (:mod:`.schema`), each mechanism's rules (:mod:`.mechanisms`),
coercion (:mod:`.coerce`), validation (:mod:`.validate`), loading presets and overrides (:mod:`.load`), the
run's identity (:mod:`.identity`) and the command-line flags (:mod:`.args`). Imports only the base layer."""
from .args import add_config_args, overrides_from_args
from .identity import HASHED_WHEN_SET, RESUME_MAY_CHANGE, config_hash, eval_settings, resume_mismatch, run_identity
from .load import PRESET_DIR, from_dict, load_config, preset_path, read_yaml, save_yaml, with_overrides
from .mechanisms import MECHANISMS
from .schema import EVAL_KEYS, EVAL_SPLITS, FIELD_DEFAULTS, FIELD_NAMES, RUNTIME_KEYS, STR_CHOICES, Config
from .validate import validate

__all__ = ["Config", "MECHANISMS", "EVAL_KEYS", "EVAL_SPLITS", "FIELD_DEFAULTS", "FIELD_NAMES", "RUNTIME_KEYS",
           "STR_CHOICES", "HASHED_WHEN_SET", "RESUME_MAY_CHANGE", "PRESET_DIR", "add_config_args",
           "overrides_from_args", "config_hash", "eval_settings", "resume_mismatch", "run_identity", "from_dict",
           "load_config", "preset_path", "read_yaml", "save_yaml", "with_overrides", "validate"]
