"""params.yaml is the single source of knobs; each stage reads and checks its own keys."""
import yaml

PARAMS_FILE = "params.yaml"


class ParamError(ValueError):
    """A knob in params.yaml is missing, of the wrong type or out of range."""


def load(path=PARAMS_FILE):
    with open(path) as f:
        return yaml.safe_load(f) or {}


def get(params, key, kind, *, low=None, above=None, high=None, choices=None):
    """Return params[key] (dotted), checked; raise ParamError naming the key otherwise.

    low/high are inclusive bounds, above an exclusive one; choices restricts the value
    (or every item of a list).
    """
    node = params
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ParamError(f"params.yaml: '{key}' is missing")
        node = node[part]
    value = node
    # YAML 1.1 reads 1e-5 as a string and 3 as an int where a float is meant.
    if kind is float and isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            value = float(value)
        except ValueError:
            pass
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
        raise ParamError(f"params.yaml: '{key}' must be {names}, got {value!r}")
    items = value if isinstance(value, list) else [value]
    if isinstance(value, list) and not value:
        raise ParamError(f"params.yaml: '{key}' must not be empty")
    for item in items:
        if choices is not None and item not in choices:
            raise ParamError(f"params.yaml: '{key}' has {item!r}; choose from {sorted(map(str, choices))}")
        if low is not None and item < low:
            raise ParamError(f"params.yaml: '{key}' must be >= {low}, got {item!r}")
        if above is not None and item <= above:
            raise ParamError(f"params.yaml: '{key}' must be > {above}, got {item!r}")
        if high is not None and item > high:
            raise ParamError(f"params.yaml: '{key}' must be <= {high}, got {item!r}")
    return value
