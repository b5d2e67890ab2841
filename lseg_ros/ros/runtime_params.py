"""The parameters lseg_node takes while running: one table, name -> (check, apply).

``check(node, value)`` returns the value to use, or raises ValueError naming the bad value
and what is accepted (once the node is configured, its segmenter's text rules apply too);
``apply(node, value)`` puts a checked value in use on a configured node. A request is
applied only if every parameter in it passes (atomic). Every other parameter is read-only
(params.py declares them so, from this table's names). Imports nothing of rclpy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Tuple

from .labels import label_list


@dataclass(frozen=True)
class RuntimeParameter:
    check: Callable[[Any, Any], Any]  # (node, value) -> the value to apply; ValueError names a bad one
    apply: Callable[[Any, Any], None]  # (configured node, checked value)


def _check_labels(node, value) -> List[str]:
    labels = label_list(value)
    if labels and node.segmenter is not None:
        node.segmenter.validate_labels(labels)
    return labels


def _apply_labels(node, labels: List[str]) -> None:
    node.label_scheduler.submit(labels, None, None, "labels parameter")


def _check_obstacle_labels(node, value) -> List[str]:
    obstacles = label_list(value, "obstacle_labels")
    if obstacles and node.segmenter is not None:
        obstacles = node.segmenter.validate_texts(obstacles)
    return obstacles


def _apply_obstacle_labels(node, obstacles: List[str]) -> None:
    node.node_config.obstacle_labels = obstacles
    node.warn_missing_obstacles(node.segmenter.labels)


def _fraction(name: str) -> Callable[[Any, Any], float]:
    """The check of a number in [0, 1] named ``name``."""
    def check(node, value) -> float:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"{name} {value!r} out of range; accepted: [0, 1]")
        return float(value)
    return check


def _apply_threshold(node, threshold: float) -> None:
    node.segmenter.set_threshold(threshold)
    # re-resolve default thresholds, unless another label set is waiting
    node.label_scheduler.reapply_latest("threshold parameter")


def _apply_overlay_alpha(node, alpha: float) -> None:
    node.node_config.overlay_alpha = alpha


#: the parameters that may change while the node runs (all others need a restart)
RUNTIME_PARAMETERS: Dict[str, RuntimeParameter] = {
    "labels": RuntimeParameter(_check_labels, _apply_labels),
    "threshold": RuntimeParameter(_fraction("threshold"), _apply_threshold),
    "overlay_alpha": RuntimeParameter(_fraction("overlay_alpha"), _apply_overlay_alpha),
    "obstacle_labels": RuntimeParameter(_check_obstacle_labels, _apply_obstacle_labels),
}


def checked_changes(node, parameters) -> List[Tuple[str, Any]]:
    """[(name, checked value)] of the run-time parameters among rclpy ``parameters``;
    ValueError names the first bad one (then nothing is applied)."""
    from rclpy.parameter import Parameter

    changes = []
    for parameter in parameters:
        if parameter.type_ == Parameter.Type.NOT_SET:
            # with dynamic typing, NOT_SET would delete the parameter for good
            raise ValueError(f"parameter {parameter.name!r} cannot be unset (type NOT_SET); "
                             "set a value of its type instead")
        entry = RUNTIME_PARAMETERS.get(parameter.name)
        if entry is not None:
            changes.append((parameter.name, entry.check(node, parameter.value)))
    return changes
